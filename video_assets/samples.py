"""Sample videos with real speech (espeak-ng) and on-screen text, for the demo, tests and benchmarks.

Each scene is one still picture (a coloured background with large text, or ffmpeg's moving test
pattern) with its own spoken sentence; the scenes are joined by ffmpeg in one encode.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from video_assets.media.ffmpeg import run_ffmpeg

AUDIO_RATE = 22_050


@dataclass(frozen=True)
class Scene:
    duration: float
    speech: str = ""
    text: str = ""  # drawn large on screen
    background: str = "#1f3a93"
    moving: bool = False  # ffmpeg's testsrc2 pattern instead of a still picture


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, rate: int = AUDIO_RATE, words_per_minute: int = 150) -> np.ndarray:
    """int16 mono speech at `rate` Hz from espeak-ng."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
            source_rate = wav.getframerate()
    if source_rate != rate:
        positions = np.linspace(0, len(samples) - 1, int(len(samples) * rate / source_rate))
        samples = np.interp(positions, np.arange(len(samples)), samples).astype("<i2")
    return samples


def make_video(
    path: Path,
    scenes: Sequence[Scene],
    *,
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    keyframe_seconds: float = 2.0,
    audio: bool = True,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """Encode `scenes` into `path` (the container follows the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        inputs: list[str] = []
        for i, scene in enumerate(scenes):
            if scene.moving:
                inputs += [
                    "-f",
                    "lavfi",
                    "-t",
                    f"{scene.duration:.3f}",
                    "-i",
                    f"testsrc2=size={size[0]}x{size[1]}:rate={fps}",
                ]
            else:
                picture = tmp_dir / f"scene_{i}.png"
                draw_card(scene.text, scene.background, size).save(picture)
                inputs += ["-loop", "1", "-framerate", str(fps), "-t", f"{scene.duration:.3f}", "-i", str(picture)]
        joined = "".join(f"[{i}:v]setsar=1,format=yuv420p[v{i}];" for i in range(len(scenes)))
        joined += "".join(f"[v{i}]" for i in range(len(scenes))) + f"concat=n={len(scenes)}:v=1:a=0[v]"
        args = [*inputs]
        maps = ["-map", "[v]"]
        if audio:
            soundtrack = tmp_dir / "soundtrack.wav"
            write_wav(soundtrack, soundtrack_for(scenes))
            args += ["-i", str(soundtrack)]
            maps += ["-map", f"{len(scenes)}:a"]
        args += ["-filter_complex", joined, *maps, "-r", str(fps)]
        args += ["-c:v", video_codec, "-g", str(max(1, int(fps * keyframe_seconds)))]
        if video_codec == "libx264":
            args += ["-preset", "veryfast", "-pix_fmt", "yuv420p"]
        elif video_codec == "libvpx-vp9":
            args += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"]
        if audio:
            args += ["-c:a", audio_codec, "-shortest"]
        args.append(str(path))
        run_ffmpeg(args, source=path, what="making the sample video")
    return path


def soundtrack_for(scenes: Sequence[Scene], rate: int = AUDIO_RATE) -> np.ndarray:
    """Each scene's speech, starting 0.3 s into the scene, cut or padded to the scene's length."""
    parts = []
    for scene in scenes:
        length = int(scene.duration * rate)
        track = np.zeros(length, dtype="<i2")
        if scene.speech:
            speech = speak(scene.speech, rate)[: max(0, length - int(0.3 * rate))]
            lead = int(0.3 * rate)
            track[lead : lead + len(speech)] = speech
        parts.append(track)
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def draw_card(text: str, background: str, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, background)
    if text:
        draw = ImageDraw.Draw(image)
        font = _font(max(16, size[1] // 6))
        box = draw.textbbox((0, 0), text, font=font)
        x = (size[0] - (box[2] - box[0])) // 2 - box[0]
        y = (size[1] - (box[3] - box[1])) // 2 - box[1]
        draw.text((x, y), text, fill="white", font=font)
    return image


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


DEMO_SCENES = (
    Scene(24.0, "Welcome to the quarterly review. Revenue grew in every region this spring.", "REVIEW", "#1f3a93"),
    Scene(24.0, "The volcano expedition collected rock samples near the crater rim.", "VOLCANO", "#b22222"),
    Scene(24.0, "Our new bicycle factory opens in the harbour district next month.", "BICYCLE", "#2e7d32"),
)
