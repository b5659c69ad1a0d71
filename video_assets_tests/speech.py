"""Judging what a model heard in synthetic speech: with margins, since CPUs and model versions differ."""

from __future__ import annotations

import re

SPOKEN = {
    "volcano": "The volcano erupted with bright orange lava near the village.",
    "bicycle": "My bicycle has a broken chain and a flat tire.",
    "piano": "She practised the piano every morning before school.",
}


def spoken_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length: synthetic speech is judged with a margin."""
    ref, hyp = spoken_words(reference), spoken_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1] / max(len(ref), 1)


def keywords_heard(text: str, keywords: set[str]) -> set[str]:
    return keywords & set(spoken_words(text))
