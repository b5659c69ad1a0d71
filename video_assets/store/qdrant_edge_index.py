"""The embedded default index: Qdrant's own engine (Qdrant Edge) in one shard folder, no server to run.

One process holds a shard at a time. The engine's own guard, a lock on the write-ahead log, is
taken only after the segments are read, so a process loading a shard while another writes it can
read torn files or a stale state whose flush then drops the other's points (measured: 20 of 200).
An exclusive lock file beside the shard (`<collection>.lock`) is therefore held from before the
load until after the close. The daemon, run workers, CLI searches and a web server each open the
shard per use and close it right after, and an opener that finds it held waits up to
`lock_wait_seconds`. Reloading per use is also what makes one process see another's writes, and it
resets the keyword IDF statistics, which count deleted points until the shard is reloaded. The WAL
stays on: without it a second writer silently loses points.

Nothing optimises a shard in the background, and this module never asks it to: points stay in
plain, appendable segments and every dense search is exact (brute force, like qdrant-client's local
mode), so results never depend on whether or when an optimisation ran. Measured at 100,000 points
that is a few milliseconds per query, well under the cost of embedding the query.

Reciprocal rank fusion often ties (the top dense and the top keyword candidate score alike); ties
are broken by dense cosine, so the order is the same in every engine and the closer meaning leads.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import qdrant_edge as qe

from video_assets.store.vector_index import (
    DENSE,
    INDEXED_KEYS,
    KEYWORDS,
    PREFETCH_FACTOR,
    RRF_K,
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

CONFIG_FILE = "edge_config.json"  # written by EdgeShard.create: its presence means the shard exists
_UPSERT_BATCH = 512
_SCROLL_PAGE = 1024
_RETRY_SECONDS = 0.05
_EXACT = qe.SearchParams(exact=True)


def shard_exists(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def shard_config(dimension: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
        sparse_vectors={KEYWORDS: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def create_shard(path: Path, dimension: int) -> qe.EdgeShard:
    """A new, empty shard with the dense and keyword vectors and the payload indexes queries filter on."""
    try:
        shard = qe.EdgeShard.create(str(path), shard_config(dimension))
        for key in INDEXED_KEYS:
            shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
    except Exception as exc:  # qdrant_edge raises bare Exceptions
        raise VectorIndexError(f"cannot create the Qdrant Edge shard in {path}: {exc}") from exc
    return shard


def load_shard(path: Path, *, lock_wait_seconds: float) -> qe.EdgeShard:
    """Load the shard; the WAL lock should be free (the lock file is held) but is waited for all the same."""
    deadline = time.monotonic() + lock_wait_seconds
    while True:
        try:
            return qe.EdgeShard.load(str(path))
        except Exception as exc:
            if "WouldBlock" not in str(exc):
                raise VectorIndexError(f"cannot open the Qdrant Edge shard in {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise VectorIndexError(f"{held_by_another(path)}; waited {lock_wait_seconds:g} s for it") from exc
        time.sleep(_RETRY_SECONDS)


def held_by_another(path: Path) -> str:
    return f"the search index in {path} is held by another process (a run, the daemon or a search)"


class FileLock:
    """An exclusive lock between processes (and between open indexes of one process) on `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self, *, wait_seconds: float, held_message: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + wait_seconds
        marker: Path | None = None
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._handle = handle
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.close()
                        raise VectorIndexError(f"{held_message}; waited {wait_seconds:g} s for it") from None
                    if marker is None:  # say so: a holder that keeps the shard open (the web server) lets go
                        marker = _mark_waiting(self.path, self)
                    time.sleep(_RETRY_SECONDS)
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)

    def release(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _waiters_dir(lock_file: Path) -> Path:
    return lock_file.with_name(lock_file.name + ".waiting")


def _mark_waiting(lock_file: Path, waiter: object) -> Path | None:
    folder = _waiters_dir(lock_file)
    try:
        folder.mkdir(exist_ok=True)
        marker = folder / f"{os.getpid()}.{id(waiter)}"
        marker.touch()
        return marker
    except OSError:  # a read-only folder: the holder's idle release still hands the shard over
        return None


def someone_waits(shard: Path) -> bool:
    """Whether a live process waits for the shard's lock file (each waiter leaves a marker meanwhile)."""
    try:
        entries = list(os.scandir(_waiters_dir(lock_path(shard))))
    except OSError:
        return False
    for entry in entries:
        pid = entry.name.partition(".")[0]
        try:
            os.kill(int(pid), 0)
            return True
        except (ValueError, ProcessLookupError):  # a waiter that died: its marker means nothing
            Path(entry.path).unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            return True
    return False


@contextmanager
def shard_lock(path: Path, *, wait_seconds: float, held_message: str) -> Iterator[None]:
    lock = FileLock(lock_path(path))
    lock.acquire(wait_seconds=wait_seconds, held_message=held_message)
    try:
        yield
    finally:
        lock.release()


def lock_path(path: Path) -> Path:
    """The lock file of the shard in `path`, beside it (the shard folder may not exist yet)."""
    return path.with_name(path.name + ".lock")


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _filter(**equals: str | None) -> qe.Filter | None:
    conditions: list[Any] = [_match(k, v) for k, v in equals.items() if v is not None]
    return qe.Filter(must=conditions) if conditions else None


def _sparse(vector: SparseLike) -> qe.SparseVector:
    return qe.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])


class EdgeVectorIndex(VectorIndex):
    """One collection as one Qdrant Edge shard in `path`, loaded now (if it exists) until `close`."""

    is_server = False

    def __init__(self, path: str | Path, *, lock_wait_seconds: float = 120.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.collection = self.path.name
        self.lock_wait_seconds = lock_wait_seconds
        self._shard: qe.EdgeShard | None = None
        self._ensured: tuple[int, str] | None = None
        self._lock = FileLock(lock_path(self.path))
        self._lock.acquire(wait_seconds=lock_wait_seconds, held_message=held_by_another(self.path))
        try:
            if shard_exists(self.path):
                self._shard = load_shard(self.path, lock_wait_seconds=lock_wait_seconds)
        except BaseException:
            self._lock.release()
            raise

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise VectorIndexError(f"no search index in {self.path} yet: call ensure_collection first")
        return self._shard

    def ensure_collection(self, dimension: int, model: str) -> None:
        if self._ensured == (dimension, model):
            return
        if self._shard is None:
            self._shard = create_shard(self.path, dimension)
        existing = self._dimension()
        if existing != dimension:
            raise dimension_mismatch(self.collection, existing, dimension)
        other = self._other_model(model)
        if other is not None:
            raise model_mismatch(other, model)
        self._ensured = (dimension, model)

    def _dimension(self) -> int:
        try:
            config = json.loads((self.path / CONFIG_FILE).read_text())
            vectors = config.get("vectors") or {}
            if DENSE not in vectors or KEYWORDS not in (config.get("sparse_vectors") or {}):
                raise KeyError(DENSE)
            return int(vectors[DENSE]["size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VectorIndexError(
                f"the shard in {self.path} has no {DENSE!r} and {KEYWORDS!r} vectors; "
                "it was not made by video_assets: choose another collection name"
            ) from exc

    def _models(self) -> list[str]:
        """The embedding models named by stored points, most points first (from the keyword index on "model")."""
        if self._shard is None:
            return []
        facets = self._shard.facet(qe.FacetRequest(key="model", limit=16, exact=True))
        return [str(hit.value) for hit in sorted(facets, key=lambda hit: -hit.count) if hit.count]

    def _other_model(self, model: str) -> str | None:
        return next((name for name in self._models() if name != model), None)

    def replace_partition_points(self, partition_key: str, points: Sequence[IndexedText], *, kind: str) -> int:
        structs = [
            qe.Point(
                id=point_id(partition_key, kind, item.index),
                vector={DENSE: [float(v) for v in item.dense], KEYWORDS: _sparse(item.sparse)},
                payload=point_payload(partition_key, kind, item),
            )
            for item in points
        ]
        shard = self.shard
        try:
            for start in range(0, len(structs), _UPSERT_BATCH):
                shard.update(qe.UpdateOperation.upsert_points(structs[start : start + _UPSERT_BATCH]))
            stale = qe.Filter(
                must=[_match("partition_key", partition_key), _match("kind", kind)],
                must_not=[qe.HasIdCondition(point_ids={s.id for s in structs})] if structs else None,
            )
            shard.update(qe.UpdateOperation.delete_points_by_filter(stale))
        except Exception as exc:
            raise VectorIndexError(
                f"writing {partition_key} ({kind}) to the search index in {self.path}: {exc}"
            ) from exc
        return len(structs)

    def count(self, *, workspace: str | None = None, partition_key: str | None = None, kind: str | None = None) -> int:
        if self._shard is None:
            return 0
        where = _filter(workspace=workspace, partition_key=partition_key, kind=kind)
        return self._shard.count(qe.CountRequest(exact=True, filter=where))

    def delete_partition(self, partition_key: str) -> int:
        existing = self.count(partition_key=partition_key)
        if existing:
            self.shard.update(qe.UpdateOperation.delete_points_by_filter(_filter(partition_key=partition_key)))
        return existing

    def partition_keys(self) -> set[str]:
        total = self.count()
        if not total:
            return set()
        # The keyword index on partition_key answers this without reading every payload.
        facets = self.shard.facet(qe.FacetRequest(key="partition_key", limit=total, exact=True))
        return {str(hit.value) for hit in facets if hit.count}

    def index_model(self) -> str | None:
        return next(iter(self._models()), None)

    def hybrid_search(
        self, dense: Sequence[float], sparse: SparseLike, *, workspace: str, limit: int = 10, min_score: float = 0.0
    ) -> list[SearchHit]:
        if self._shard is None:
            return []
        query = unit(dense)
        in_workspace = qe.Filter(must=[_match("workspace", workspace)])
        candidates = limit * PREFETCH_FACTOR
        prefetches = [
            qe.Prefetch(
                limit=candidates,
                query=qe.Query.Nearest(query, using=DENSE),
                filter=in_workspace,
                score_threshold=min_score,
                params=_EXACT,
            )
        ]
        if sparse.indices:  # a query of only stop words has no keyword side
            prefetches.append(
                qe.Prefetch(
                    limit=candidates, query=qe.Query.Nearest(_sparse(sparse), using=KEYWORDS), filter=in_workspace
                )
            )
        try:
            points = self._shard.query(
                qe.QueryRequest(
                    limit=limit,
                    prefetches=prefetches,
                    query=qe.Fusion.Rrf(k=RRF_K),
                    with_vector=[DENSE, KEYWORDS],
                    with_payload=True,
                )
            )
        except Exception as exc:
            raise VectorIndexError(f"searching the index in {self.path}: {exc}") from exc
        rows = []
        for point in points:
            vectors = point.vector if isinstance(point.vector, dict) else {}
            rows.append((point.score, point.payload, vectors.get(DENSE), vectors.get(KEYWORDS)))
        return fused_hits(rows, query, sparse)

    def scroll_all(self, *, with_vectors: bool = True, page: int = _SCROLL_PAGE) -> Iterator[Any]:
        """Every stored record, page by page (for export and checks)."""
        if self._shard is None:
            return
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=page, with_payload=True, with_vector=with_vectors)
            )
            yield from records
            if offset is None:
                return

    def drop_collection(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.close()
        shutil.rmtree(self.path, ignore_errors=True)  # the lock file beside it stays held
        self._ensured = None

    def close(self) -> None:
        try:
            if self._shard is not None:
                shard, self._shard = self._shard, None
                shard.close()
        finally:
            self._lock.release()
