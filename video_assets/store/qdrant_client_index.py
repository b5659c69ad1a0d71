"""The index on a Qdrant server, through qdrant-client, for deployments that run one.

qdrant-client's embedded local mode (`path=`) is kept only as a stand-in for a server where none can
run (tests) and to read data roots written before the embedded default became Qdrant Edge
(`vector_migration`): it loads a whole collection into Python and holds a lock on its folder, so it
is no engine to serve from.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from video_assets.store.vector_index import (
    DEFAULT_COLLECTION,
    DENSE,
    INDEXED_KEYS,
    KEYWORDS,
    PREFETCH_FACTOR,
    IndexedText,
    SearchHit,
    SparseLike,
    VectorIndex,
    VectorIndexError,
    dimension_mismatch,
    fused_hits,
    model_mismatch,
    point_id,
    point_payload,
    unit,
)

_UPSERT_BATCH = 256
_SCROLL_PAGE = 1024
SERVER_TIMEOUT_SECONDS = 30
SERVER_ATTEMPTS = 4  # one try and three retries, 0.5 / 1 / 2 s apart (jittered)
_RETRY_BASE_DELAY = 0.5
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_log = logging.getLogger(__name__)


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _filter(**equals: str | None) -> models.Filter | None:
    conditions: list[models.Condition] = [_match(k, v) for k, v in equals.items() if v is not None]
    return models.Filter(must=conditions) if conditions else None


def _sparse(vector: SparseLike) -> models.SparseVector:
    return models.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])


class RetryingClient:
    """A server's client whose calls are retried, with backoff, on what heals by waiting: a connection
    refused or reset, a timeout, 429 and 5xx. Anything else (a 400, a 404) fails at once. After the
    last try the error names the server: the asset's RetryPolicy takes it from there."""

    def __init__(
        self, client: QdrantClient, url: str, *, attempts: int = SERVER_ATTEMPTS, base_delay: float = _RETRY_BASE_DELAY
    ):
        self._client, self._url, self._attempts, self._base_delay = client, url, attempts, base_delay

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        return self._retrying(name, method) if callable(method) else method

    def _retrying(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, self._attempts + 1):
                try:
                    return method(*args, **kwargs)
                except (ResponseHandlingException, UnexpectedResponse) as exc:
                    status = getattr(exc, "status_code", None)
                    if status is not None and status not in _TRANSIENT_STATUS:
                        raise
                    cause = f"HTTP {status}" if status is not None else f"{type(exc).__name__}: {exc}"
                    if attempt == self._attempts:
                        raise VectorIndexError(f"Qdrant at {self._url} failed {name} {attempt} times: {cause}") from exc
                    delay = self._base_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                    _log.warning(
                        "Qdrant at %s: %s failed (%s); retry %d in %.2f s", self._url, name, cause, attempt, delay
                    )
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return call


def connect(
    *,
    url: str | None = None,
    path: str | Path | None = None,
    api_key: str | None = None,
    timeout: int = SERVER_TIMEOUT_SECONDS,
) -> QdrantClient:
    if (path is None) == (url is None):
        raise ValueError("give exactly one of url (a Qdrant server) or path (qdrant-client local mode)")
    if url is not None:
        return RetryingClient(QdrantClient(url=url, api_key=api_key, timeout=timeout), url)  # type: ignore[return-value]
    folder = Path(path).expanduser().resolve()  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(folder))


class ClientVectorIndex(VectorIndex):
    """A collection on a Qdrant server (`url`), or in a local-mode folder (`path`); it owns its client."""

    def __init__(
        self,
        *,
        url: str | None = None,
        path: str | Path | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        timeout: int = SERVER_TIMEOUT_SECONDS,
    ) -> None:
        self.client = connect(url=url, path=path, api_key=api_key, timeout=timeout)
        self.collection = collection
        self.is_server = url is not None
        self._ensured: tuple[int, str] | None = None

    def _exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def ensure_collection(self, dimension: int, model: str) -> None:
        if self._ensured == (dimension, model):
            return
        if not self._exists():
            try:
                self._create_collection(dimension)
            except Exception:
                # Another process may have created it between the check and the create.
                if not self._exists():
                    raise
        params = self.client.get_collection(self.collection).config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        if DENSE not in vectors or KEYWORDS not in (params.sparse_vectors or {}):
            raise VectorIndexError(
                f"collection {self.collection!r} exists without the {DENSE!r} and {KEYWORDS!r} vectors; "
                "it was not made by video_assets: choose another collection name"
            )
        if vectors[DENSE].size != dimension:
            raise dimension_mismatch(self.collection, vectors[DENSE].size, dimension)
        other = self._other_model(model)
        if other is not None:
            raise model_mismatch(other, model)
        self._ensured = (dimension, model)

    def _create_collection(self, dimension: int) -> None:
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={KEYWORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        # Local mode ignores payload indexes (and warns); a server uses them for every filtered query.
        # Every search is within one workspace: as the tenant key, the server keeps each workspace's
        # points together on disk.
        if self.is_server:
            for key in INDEXED_KEYS:
                schema = (
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
                    if key == "workspace"
                    else models.PayloadSchemaType.KEYWORD
                )
                self.client.create_payload_index(self.collection, key, field_schema=schema)

    def _first_model(self, where: models.Filter) -> str | None:
        records, _ = self.client.scroll(self.collection, scroll_filter=where, limit=1, with_payload=["model"])
        return str(records[0].payload["model"]) if records and records[0].payload else None

    def _other_model(self, model: str) -> str | None:
        return self._first_model(
            models.Filter(
                must_not=[_match("model", model), models.IsEmptyCondition(is_empty=models.PayloadField(key="model"))]
            )
        )

    def replace_partition_points(self, partition_key: str, points: Sequence[IndexedText], *, kind: str) -> int:
        structs = [
            models.PointStruct(
                id=point_id(partition_key, kind, item.index),
                vector={DENSE: [float(v) for v in item.dense], KEYWORDS: _sparse(item.sparse)},
                payload=point_payload(partition_key, kind, item),
            )
            for item in points
        ]
        for start in range(0, len(structs), _UPSERT_BATCH):
            self.client.upsert(self.collection, points=structs[start : start + _UPSERT_BATCH], wait=True)
        stale = models.Filter(
            must=[_match("partition_key", partition_key), _match("kind", kind)],
            must_not=[models.HasIdCondition(has_id=[s.id for s in structs])] if structs else None,
        )
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=stale), wait=True)
        return len(structs)

    def count(self, *, workspace: str | None = None, partition_key: str | None = None, kind: str | None = None) -> int:
        if not self._exists():
            return 0
        where = _filter(workspace=workspace, partition_key=partition_key, kind=kind)
        return self.client.count(self.collection, count_filter=where, exact=True).count

    def delete_partition(self, partition_key: str) -> int:
        existing = self.count(partition_key=partition_key)
        if existing:
            where = models.FilterSelector(filter=_filter(partition_key=partition_key))
            self.client.delete(self.collection, points_selector=where, wait=True)
        return existing

    def partition_keys(self) -> set[str]:
        return {
            str(r.payload["partition_key"])
            for r in self.scroll_all(with_vectors=False, payload=["partition_key"])
            if r.payload
        }

    def index_model(self) -> str | None:
        if not self._exists():
            return None
        return self._first_model(
            models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="model"))])
        )

    def hybrid_search(
        self, dense: Sequence[float], sparse: SparseLike, *, workspace: str, limit: int = 10, min_score: float = 0.0
    ) -> list[SearchHit]:
        if not self._exists():
            return []
        query = unit(dense)
        in_workspace = models.Filter(must=[_match("workspace", workspace)])
        candidates = limit * PREFETCH_FACTOR
        prefetch = [
            models.Prefetch(query=query, using=DENSE, filter=in_workspace, limit=candidates, score_threshold=min_score)
        ]
        if sparse.indices:  # a query of only stop words has no keyword side
            prefetch.append(
                models.Prefetch(query=_sparse(sparse), using=KEYWORDS, filter=in_workspace, limit=candidates)
            )
        response = self.client.query_points(
            self.collection,
            prefetch=prefetch,
            query=models.FusionQuery(fusion=models.Fusion.RRF),  # k = 2, as RRF_K
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE, KEYWORDS],
        )
        rows = []
        for point in response.points:
            vectors = point.vector if isinstance(point.vector, dict) else {}
            stored_dense, stored_sparse = vectors.get(DENSE), vectors.get(KEYWORDS)
            rows.append(
                (
                    point.score,
                    point.payload,
                    stored_dense if isinstance(stored_dense, list) else None,
                    stored_sparse if isinstance(stored_sparse, models.SparseVector) else None,
                )
            )
        return fused_hits(rows, query, sparse)

    def scroll_all(
        self, *, with_vectors: bool = True, payload: bool | list[str] = True, page: int = _SCROLL_PAGE
    ) -> Iterator[models.Record]:
        """Every stored record, page by page (for migration and checks)."""
        if not self._exists():
            return
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self.client.scroll(
                self.collection, limit=page, offset=offset, with_payload=payload, with_vectors=with_vectors
            )
            yield from records
            if offset is None:
                return

    def drop_collection(self) -> None:
        if self._exists():
            self.client.delete_collection(self.collection)
        self._ensured = None

    def close(self) -> None:
        self.client.close()
