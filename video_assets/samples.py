"""Sample videos with real speech (espeak-ng) and on-screen text, for the demo, tests and benchmarks.

Each scene is one still picture (a coloured background with large text) or ffmpeg's moving test
pattern with the same text laid over it, with its own spoken sentence; the scenes are joined by
ffmpeg in one encode. The moving kind exists because a still talk flatters the pipeline: near-identical
frames reuse their captions, so only video in which every sampled frame differs shows the full cost.
"""

from __future__ import annotations

import math
import re
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
    voice: str = "en-us"  # espeak-ng voice: the language the scene is spoken in
    subtitle: str = ""  # a line of small text near the bottom, as in news captions
    overlay: bool = False  # a moving scene shows its text and subtitle over the pattern (else no text)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, rate: int = AUDIO_RATE, words_per_minute: int = 150, voice: str = "en-us") -> np.ndarray:
    """int16 mono speech at `rate` Hz from espeak-ng. Other languages speak slower: Whisper hears
    espeak's non-English voices only at a calm pace."""
    if voice != "en-us":
        words_per_minute = min(words_per_minute, 110)
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
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
        inputs: list[list[str]] = []  # one ffmpeg input per entry; its index is the stream number
        chains = []
        for i, scene in enumerate(scenes):
            length = ["-t", f"{scene.duration:.3f}"]
            picture = tmp_dir / f"scene_{i}.png"
            still = ["-loop", "1", "-framerate", str(fps), *length, "-i", str(picture)]
            if not scene.moving:
                draw_card(scene.text, scene.background, size, scene.subtitle).save(picture)
                inputs.append(still)
                chains.append(f"[{len(inputs) - 1}:v]")
                continue
            inputs.append(["-f", "lavfi", *length, "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={fps}"])
            chain = f"[{len(inputs) - 1}:v]"
            if scene.overlay and (scene.text or scene.subtitle):
                text_overlay(scene.text, scene.subtitle, size).save(picture)
                inputs.append(still)
                chain += f"[{len(inputs) - 1}:v]overlay=0:0:shortest=1,"
            chains.append(chain)
        joined = "".join(f"{chain}setsar=1,format=yuv420p[v{i}];" for i, chain in enumerate(chains))
        joined += "".join(f"[v{i}]" for i in range(len(scenes))) + f"concat=n={len(scenes)}:v=1:a=0[v]"
        args = [arg for one in inputs for arg in one]
        maps = ["-map", "[v]"]
        if audio:
            soundtrack = tmp_dir / "soundtrack.wav"
            write_wav(soundtrack, soundtrack_for(scenes))
            args += ["-i", str(soundtrack)]
            maps += ["-map", f"{len(inputs)}:a"]
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
            speech = speak(scene.speech, rate, voice=scene.voice)[: max(0, length - int(0.3 * rate))]
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


def make_moving_video(
    path: Path,
    seconds: float,
    *,
    size: tuple[int, int] = (1280, 720),
    text_lines: Sequence[str] | None = None,
    speech: Sequence[str] | None = None,
    subtitles: Sequence[str] = (),
    scene_seconds: float = 30.0,
    fps: int = 25,
    keyframe_seconds: float = 2.0,
    audio: bool = True,
) -> Path:
    """`seconds` of testsrc2 in scenes of `scene_seconds`, scene i showing text_lines[i] (large) and
    subtitles[i] (small) and saying speech[i], each list used round-robin (by default the demo's words and
    sentences); see `make_video`."""
    text_lines = [scene.text for scene in DEMO_SCENES] if text_lines is None else text_lines
    speech = [scene.speech for scene in DEMO_SCENES] if speech is None else speech
    count = max(1, math.ceil(seconds / scene_seconds - 1e-9))
    scenes = [
        Scene(
            min(scene_seconds, seconds - i * scene_seconds),
            speech=speech[i % len(speech)] if speech else "",
            text=text_lines[i % len(text_lines)] if text_lines else "",
            moving=True,
            overlay=True,
            subtitle=subtitles[i % len(subtitles)] if subtitles else "",
        )
        for i in range(count)
    ]
    return make_video(path, scenes, size=size, fps=fps, keyframe_seconds=keyframe_seconds, audio=audio)


def draw_card(text: str, background: str, size: tuple[int, int], subtitle: str = "") -> Image.Image:
    image = Image.new("RGB", size, background)
    _draw_text(ImageDraw.Draw(image), text, subtitle, size, plate=None)
    return image


def text_overlay(text: str, subtitle: str, size: tuple[int, int]) -> Image.Image:
    """Transparent picture of the card's text for a moving background, each line on a dark plate so it
    stays legible over any colour, as broadcast captions are."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    _draw_text(ImageDraw.Draw(image), text, subtitle, size, plate=(0, 0, 0, 170))
    return image


def _draw_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    subtitle: str,
    size: tuple[int, int],
    plate: tuple[int, int, int, int] | None,
) -> None:
    # The subtitle is ~30 px at 720p: the size of broadcast captions, and what OCR must still read.
    lines = [(text, _font(max(16, size[1] // 6)), None), (subtitle, _font(max(10, size[1] // 24)), size[1] * 0.85)]
    for line, font, centre_y in lines:
        if not line:
            continue
        box = draw.textbbox((0, 0), line, font=font)
        x = (size[0] - (box[2] - box[0])) // 2 - box[0]
        y = int((centre_y or size[1] / 2) - (box[3] - box[1]) / 2) - box[1]
        if plate is not None:
            margin = max(4, (box[3] - box[1]) // 4)
            draw.rectangle(
                (x + box[0] - margin, y + box[1] - margin, x + box[2] + margin, y + box[3] + margin), fill=plate
            )
        draw.text((x, y), line, fill="white", font=font)


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


def spoken_words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length: how well a model heard a sample's speech."""
    ref, hyp = spoken_words(reference), spoken_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1] / max(len(ref), 1)
