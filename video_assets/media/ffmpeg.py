"""Where the ffmpeg binary comes from, and running it with errors that say what went wrong."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from video_assets.media.errors import MediaError


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """FFMPEG_BINARY if set, else a system ffmpeg, else the static build shipped in imageio-ffmpeg."""
    explicit = os.environ.get("FFMPEG_BINARY")
    if explicit:
        return explicit
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, source: str | Path, what: str) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        detail = _last_lines(proc.stderr) or f"exit status {proc.returncode}"
        raise MediaError(source, f"{what} failed: {detail}")


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
