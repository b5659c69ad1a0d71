"""Where the ffmpeg binary comes from, and running it with errors that say what went wrong."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
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
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", preexec_fn=_die_with_parent())
    if proc.returncode != 0:
        detail = _last_lines(proc.stderr) or f"exit status {proc.returncode}"
        raise MediaError(source, f"{what} failed: {detail}")


_PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=1)
def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child that the kernel kills when the process that started it dies (SIGKILL, OOM):
    a killed run must not leave ffmpeg writing into its staging folder under PID 1."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl  # resolved before fork

    def request() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return request


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
