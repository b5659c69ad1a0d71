"""The 16 kHz mono audio track that Whisper reads, stored once per video as a WAV file."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000


def read_wav_16k(path: str | Path) -> np.ndarray:
    """float32 samples in [-1, 1], the array faster-whisper takes without decoding again."""
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        pcm = wav.readframes(wav.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def ffmpeg_audio_output_args(path: Path, track: int = 0) -> list[str]:
    """ffmpeg output options that decode audio track `track` to 16 kHz mono PCM in the same pass."""
    return [
        *("-map", f"0:a:{track}", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE)),
        *("-c:a", "pcm_s16le", "-f", "wav", str(path)),
    ]
