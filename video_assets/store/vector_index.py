"""The Qdrant vector index: one point per segment (and one per video description), hybrid search.

Each point carries a dense vector ("dense", cosine) and a sparse keyword vector ("keywords") whose IDF
Qdrant computes from the collection itself. A search runs both and fuses the rankings with reciprocal
rank fusion, always filtered to one workspace.

Embedded local mode (``path=``) holds a file lock on its folder: only one client per folder may be
open in a process. Use `open_index`, which shares one client per folder (or server URL) within a
process, instead of constructing `VectorIndex` twice for the same folder.
"""

from __future__ import annotations

import atexit
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qdrant_client import QdrantClient, models

DEFAULT_COLLECTION = "video_segments"
DENSE = "dense"
KEYWORDS = "keywords"
SEGMENT = "segment"
DESCRIPTION = "description"
# Ids are uuid5 of "<partition>:<kind>:<index>" in this namespace: a rerun overwrites the same points.
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "video_assets/vector_index")
# Each side of a hybrid search fetches this many times `limit` candidates before fusion.
PREFETCH_FACTOR = 4
_UPSERT_BATCH = 256
_SCROLL_PAGE = 1024


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
    score: float
    text: str
    kind: str  # "segment" | "description"


def point_id(partition_key: str, kind: str, index: int | None) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{partition_key}:{kind}:{index}"))


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _filter(**equals: str | None) -> models.Filter | None:
    conditions: list[models.Condition] = [_match(k, v) for k, v in equals.items() if v is not None]
    return models.Filter(must=conditions) if conditions else None


def _sparse(vector: SparseLike) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _batches(items: list[models.PointStruct], size: int) -> Iterator[list[models.PointStruct]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class VectorIndex:
    def __init__(
        self,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        client: QdrantClient | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """A folder (embedded local mode) or a server URL; `client`/`on_close` are for `open_index`."""
        if client is None:
            client = _connect(path=path, url=url, api_key=api_key)
        self.client = client
        self.collection = collection
        self.is_server = url is not None
        self._on_close = on_close if on_close is not None else client.close
        self._ensured_dimension: int | None = None

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection if missing; refuse one whose dense size differs from the model's."""
        if self._ensured_dimension == dimension:
            return
        if not self.client.collection_exists(self.collection):
            try:
                self._create_collection(dimension)
            except Exception:
                # Another process may have created it between the check and the create.
                if not self.client.collection_exists(self.collection):
                    raise
        self._check_existing(dimension)
        self._ensured_dimension = dimension

    def _create_collection(self, dimension: int) -> None:
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={KEYWORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        # Local mode ignores payload indexes (and warns); a server uses them for every filtered query.
        if self.is_server:
            for key in ("workspace", "partition_key"):
                self.client.create_payload_index(self.collection, key, field_schema=models.PayloadSchemaType.KEYWORD)

    def _check_existing(self, dimension: int) -> None:
        params = self.client.get_collection(self.collection).config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        if DENSE not in vectors or KEYWORDS not in (params.sparse_vectors or {}):
            raise VectorIndexError(
                f"collection {self.collection!r} exists without the {DENSE!r} and {KEYWORDS!r} vectors; "
                "it was not made by video_assets: choose another collection name"
            )
        existing = vectors[DENSE].size
        if existing != dimension:
            raise VectorIndexError(
                f"collection {self.collection!r} holds {existing}-dimensional vectors but the embedding "
                f"model makes {dimension}-dimensional ones: use another collection for this model, "
                "or delete the collection and re-index"
            )

    def replace_partition_points(self, partition_key: str, points: Sequence[IndexedText], *, kind: str) -> int:
        """Store exactly `points` for this partition and kind: upsert, then drop whatever else was there."""
        structs = [self._point(partition_key, kind, p) for p in points]
        for batch in _batches(structs, _UPSERT_BATCH):
            self.client.upsert(self.collection, points=batch, wait=True)
        stale = models.Filter(
            must=[_match("partition_key", partition_key), _match("kind", kind)],
            must_not=[models.HasIdCondition(has_id=[s.id for s in structs])] if structs else None,
        )
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=stale), wait=True)
        return len(structs)

    def _point(self, partition_key: str, kind: str, item: IndexedText) -> models.PointStruct:
        if not item.payload.get("workspace"):
            raise ValueError(f"point {partition_key}:{kind}:{item.index} has no workspace in its payload")
        payload = {
            **item.payload,
            "partition_key": partition_key,
            "kind": kind,
            "segment": item.index,
            "text": item.text,
        }
        return models.PointStruct(
            id=point_id(partition_key, kind, item.index),
            vector={DENSE: list(map(float, item.dense)), KEYWORDS: _sparse(item.sparse)},
            payload=payload,
        )

    def count(self, *, workspace: str | None = None, partition_key: str | None = None, kind: str | None = None) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        where = _filter(workspace=workspace, partition_key=partition_key, kind=kind)
        return self.client.count(self.collection, count_filter=where, exact=True).count

    def delete_partition(self, partition_key: str) -> None:
        if self.client.collection_exists(self.collection):
            where = models.Filter(must=[_match("partition_key", partition_key)])
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=where), wait=True)

    def partition_keys(self) -> set[str]:
        """Every partition with points in the index, to find those whose video is gone."""
        keys: set[str] = set()
        if not self.client.collection_exists(self.collection):
            return keys
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self.client.scroll(
                self.collection, limit=_SCROLL_PAGE, offset=offset, with_payload=["partition_key"]
            )
            keys.update(str(r.payload["partition_key"]) for r in records if r.payload)
            if offset is None:
                return keys

    def hybrid_search(
        self, dense: Sequence[float], sparse: SparseLike, *, workspace: str, limit: int = 10
    ) -> list[SearchHit]:
        """Dense and keyword candidates fused by reciprocal rank, only from `workspace`."""
        if not self.client.collection_exists(self.collection):
            return []
        in_workspace = models.Filter(must=[_match("workspace", workspace)])
        candidates = limit * PREFETCH_FACTOR
        prefetch = [models.Prefetch(query=list(dense), using=DENSE, filter=in_workspace, limit=candidates)]
        if sparse.indices:  # a query of only stop words has no keyword side
            prefetch.append(
                models.Prefetch(query=_sparse(sparse), using=KEYWORDS, filter=in_workspace, limit=candidates)
            )
        response = self.client.query_points(
            self.collection,
            prefetch=prefetch,
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            query_filter=in_workspace,
            limit=limit,
            with_payload=True,
        )
        return [_hit(point) for point in response.points]

    def close(self) -> None:
        self._on_close()


def _hit(point: models.ScoredPoint) -> SearchHit:
    payload = point.payload or {}
    files = payload.get("files") or []
    return SearchHit(
        file=str(files[0]) if files else "",
        partition=str(payload.get("partition_key", "")),
        segment=payload.get("segment"),
        start=payload.get("start"),
        end=payload.get("end"),
        score=float(point.score),
        text=str(payload.get("text", "")),
        kind=str(payload.get("kind", SEGMENT)),
    )


def _location(path: str | Path | None, url: str | None) -> str:
    """The server URL, or the local folder as an absolute path (the same folder however it is spelt)."""
    if (path is None) == (url is None):
        raise ValueError("give exactly one of path (embedded local Qdrant) or url (a Qdrant server)")
    if url is not None:
        return url
    assert path is not None
    return str(Path(path).expanduser().resolve())


def _connect(*, path: str | Path | None, url: str | None, api_key: str | None) -> QdrantClient:
    location = _location(path, url)
    if url is not None:
        return QdrantClient(url=location, api_key=api_key)
    Path(location).mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=location)


# One client per folder or URL per process (local mode's file lock allows no second one).
_shared_lock = threading.Lock()
_shared_clients: dict[str, QdrantClient] = {}
_shared_indexes: dict[tuple[str, str], VectorIndex] = {}


def open_index(
    *,
    path: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
) -> VectorIndex:
    """The process-wide index for this folder or server and collection, opened on first use.

    Closing it closes the shared client for that location (and every index sharing it); the next
    `open_index` call opens a fresh one.
    """
    location = _location(path, url)
    with _shared_lock:
        index = _shared_indexes.get((location, collection))
        if index is not None:
            return index
        client = _shared_clients.get(location)
        if client is None:
            client = _shared_clients[location] = _connect(path=path, url=url, api_key=api_key)
        index = VectorIndex(client=client, url=url, collection=collection, on_close=lambda: _close_shared(location))
        _shared_indexes[(location, collection)] = index
        return index


def close_shared_indexes() -> None:
    """Close every index `open_index` opened; also run at exit, before Qdrant's own finalizers fail."""
    with _shared_lock:
        locations = list(_shared_clients)
    for location in locations:
        _close_shared(location)


atexit.register(close_shared_indexes)


def _close_shared(location: str) -> None:
    with _shared_lock:
        client = _shared_clients.pop(location, None)
        for key in [k for k in _shared_indexes if k[0] == location]:
            del _shared_indexes[key]
    if client is not None:
        client.close()
