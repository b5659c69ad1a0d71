"""The vector index as the pipeline and search see it, whichever Qdrant engine holds the points.

Two engines sit behind `VectorIndex`: Qdrant Edge (`qdrant_edge_index`), embedded in the process
with no server to run, and qdrant-client (`qdrant_client_index`) for a Qdrant server. Everything
here is what both must agree on, so that moving a data root from one engine to the other changes no
point id, payload or search result: ids are derived from what a point is, payloads carry the same
keys, and a hit reports the same numbers.

A hybrid search answers only when something matches: dense candidates must reach `min_score`
cosine and keyword candidates must share a query token; each hit's score is its dense cosine, a
number a reader can compare across queries (a fusion score is only a rank in disguise).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

DEFAULT_COLLECTION = "video_segments"
DENSE = "dense"
KEYWORDS = "keywords"
SEGMENT = "segment"
DESCRIPTION = "description"
# Ids are uuid5 of "<partition>:<kind>:<index>" in this namespace: a rerun overwrites the same points.
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "video_assets/vector_index")
# Each side of a hybrid search fetches this many times `limit` candidates before fusion.
PREFETCH_FACTOR = 4
# Qdrant's default reciprocal-rank-fusion constant, named so both engines fuse alike.
RRF_K = 2
# Payload keys that queries filter or group by; a server (and an edge shard) keeps a keyword index on them.
INDEXED_KEYS = ("workspace", "partition_key", "model")


class SparseLike(Protocol):
    indices: Sequence[int]
    values: Sequence[float]


class VectorIndexError(RuntimeError):
    pass


@dataclass
class IndexedText:
    index: int | None  # segment index; None for a video-level text such as the description
    text: str
    dense: Sequence[float]
    sparse: SparseLike
    payload: dict[str, Any] = field(default_factory=dict)  # workspace, files, start, end, model, ...


@dataclass
class SearchHit:
    file: str  # the first of the point's files: the video
    partition: str
    segment: int | None
    start: float | None
    end: float | None
    score: float  # cosine of the hit's dense vector with the query's
    text: str
    kind: str  # "segment" | "description"
    keyword_match: bool = False  # the hit shares at least one keyword with the query
    language: str | None = None


def point_id(partition_key: str, kind: str, index: int | None) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{partition_key}:{kind}:{index}"))


class VectorIndex(ABC):
    """One collection of segment and description points; `close` it after use."""

    is_server: bool

    @abstractmethod
    def ensure_collection(self, dimension: int, model: str) -> None:
        """Create the collection if missing; refuse one of another dense size or embedding model."""

    @abstractmethod
    def replace_partition_points(self, partition_key: str, points: Sequence[IndexedText], *, kind: str) -> int:
        """Store exactly `points` for this partition and kind: upsert, then drop whatever else was there."""

    @abstractmethod
    def count(self, *, workspace: str | None = None, partition_key: str | None = None, kind: str | None = None) -> int:
        """Points matching every given key; 0 when there is no collection yet."""

    @abstractmethod
    def delete_partition(self, partition_key: str) -> int:
        """Drop every point of the partition; returns how many there were."""

    @abstractmethod
    def partition_keys(self) -> set[str]:
        """Every partition with points in the index, to find those whose video is gone."""

    @abstractmethod
    def index_model(self) -> str | None:
        """The embedding model the stored points were made with; None when no point names one."""

    @abstractmethod
    def hybrid_search(
        self, dense: Sequence[float], sparse: SparseLike, *, workspace: str, limit: int = 10, min_score: float = 0.0
    ) -> list[SearchHit]:
        """Dense and keyword candidates of `workspace` fused by reciprocal rank in the engine."""

    @abstractmethod
    def drop_collection(self) -> None:
        """Remove the collection and every point in it (a re-index starts from nothing)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def point_payload(partition_key: str, kind: str, item: IndexedText) -> dict[str, Any]:
    if not item.payload.get("workspace"):
        raise ValueError(f"point {partition_key}:{kind}:{item.index} has no workspace in its payload")
    return {**item.payload, "partition_key": partition_key, "kind": kind, "segment": item.index, "text": item.text}


def dimension_mismatch(collection: str, existing: int, dimension: int) -> VectorIndexError:
    return VectorIndexError(
        f"collection {collection!r} holds {existing}-dimensional vectors but the embedding "
        f"model makes {dimension}-dimensional ones: use another collection for this model, "
        "or delete the collection and re-index"
    )


def model_mismatch(old: str, model: str) -> VectorIndexError:
    return VectorIndexError(
        f"the search index holds vectors of {old!r} but the embedding model is {model!r}: run `video-assets reindex`"
    )


def unit(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to length 1 (a zero vector stays zero)."""
    values = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(values))
    return (values / norm if norm else values).tolist()


def cosine(unit_query: Sequence[float] | np.ndarray, stored: Sequence[float]) -> float:
    """Cosine of a stored dense vector with an already normalised query."""
    values = np.asarray(stored, dtype=np.float64)
    norm = float(np.linalg.norm(values))
    return float(np.dot(unit_query, values) / norm) if norm else 0.0


def shares_token(query_tokens: set[int], stored: SparseLike | None) -> bool:
    return stored is not None and not query_tokens.isdisjoint(int(i) for i in stored.indices)


def fused_hits(
    fused: Iterable[tuple[float, Mapping[str, Any] | None, Sequence[float] | None, SparseLike | None]],
    unit_query: Sequence[float],
    query_sparse: SparseLike,
) -> list[SearchHit]:
    """Hits from the engine's fused (score, payload, dense, keywords) rows, in fusion order.

    Each hit is scored by its dense cosine and marked a keyword match when it shares a token with
    the query (exactly what lets the keyword prefetch return a point). Rows the fusion ranks equal
    keep the closer meaning first, so every engine gives the same order.
    """
    tokens = {int(i) for i in query_sparse.indices}
    query = np.asarray(unit_query, dtype=np.float64)
    rows = [
        (fused_score, cosine(query, dense or []), search_hit(payload, keyword_match=shares_token(tokens, sparse)))
        for fused_score, payload, dense, sparse in fused
    ]
    rows.sort(key=lambda row: (-row[0], -row[1]))  # stable: only exact ties move
    for _, score, hit in rows:
        hit.score = score
    return [hit for _, _, hit in rows]


def search_hit(payload: Mapping[str, Any] | None, *, score: float = 0.0, keyword_match: bool) -> SearchHit:
    payload = payload or {}
    files = payload.get("files") or []
    return SearchHit(
        file=str(files[0]) if files else "",
        partition=str(payload.get("partition_key", "")),
        segment=payload.get("segment"),
        start=payload.get("start"),
        end=payload.get("end"),
        score=score,
        text=str(payload.get("text", "")),
        kind=str(payload.get("kind", SEGMENT)),
        keyword_match=keyword_match,
        language=payload.get("language"),
    )
