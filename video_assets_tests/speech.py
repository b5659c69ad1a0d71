"""Judging what a model heard in synthetic speech: with margins, since CPUs and model versions differ."""

from __future__ import annotations

from video_assets.samples import spoken_words, word_error_rate

__all__ = ["SPOKEN", "keywords_heard", "spoken_words", "word_error_rate"]

SPOKEN = {
    "volcano": "The volcano erupted with bright orange lava near the village.",
    "bicycle": "My bicycle has a broken chain and a flat tire.",
    "piano": "She practised the piano every morning before school.",
}


def keywords_heard(text: str, keywords: set[str]) -> set[str]:
    return keywords & set(spoken_words(text))
