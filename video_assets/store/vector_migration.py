"""Carrying a data root written by qdrant-client's local mode over to the Qdrant Edge shard, once.

Data roots made before Qdrant Edge became the embedded default keep their points in local mode's
files (`<vectors>/meta.json`, `<vectors>/collection/<name>/storage.sqlite`). Re-embedding every
video to rebuild the index would cost hours of model time, while copying the stored points costs
seconds, so the first open of a collection with such files and no shard copies them.

The copy is built in a side folder and renamed into place only when complete and counted, so a
crash leaves no half shard that would pass for a migrated one; the old files are moved aside, never
deleted, and still open with `QdrantClient(path=<vectors>/local-mode.migrated)`. A lock beside the
shard makes a second process wait for the first to finish instead of copying twice.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from video_assets.store.qdrant_edge_index import create_shard, shard_exists, shard_lock
from video_assets.store.vector_index import DENSE, KEYWORDS, VectorIndexError

logger = logging.getLogger("video_assets")

EDGE_DIR = "edge"
MIGRATED_DIR = "local-mode.migrated"
_BATCH = 512
# A migration of a large collection can take minutes; a second process waits at least this long.
_MIN_MIGRATION_WAIT = 900.0


def edge_shard_path(vectors: Path, collection: str) -> Path:
    """Where a collection's Qdrant Edge shard lives: `<vectors>/edge/<collection>`."""
    return vectors / EDGE_DIR / collection


def legacy_collection_path(vectors: Path, collection: str) -> Path:
    return vectors / "collection" / collection


def needs_migration(vectors: Path, collection: str) -> bool:
    return (legacy_collection_path(vectors, collection) / "storage.sqlite").is_file() and not shard_exists(
        edge_shard_path(vectors, collection)
    )


def migrate_local_mode(vectors: Path, collection: str, *, lock_wait_seconds: float = 120.0) -> int | None:
    """Copy the collection's local-mode points into a new edge shard; None when there is nothing to do."""
    vectors = vectors.expanduser().resolve()
    if not needs_migration(vectors, collection):
        return None
    target = edge_shard_path(vectors, collection)
    wait = max(lock_wait_seconds, _MIN_MIGRATION_WAIT)
    held = f"another process is migrating or using the search index in {target}"
    with shard_lock(target, wait_seconds=wait, held_message=held):
        if not needs_migration(vectors, collection):  # another process did it while this one waited
            return None
        started = time.perf_counter()
        moved = _copy_into_shard(vectors, collection, target)
        aside = _move_aside(vectors, collection)
    logger.info(
        "moved %d points of collection %r from qdrant-client local mode in %s to the Qdrant Edge shard in %s "
        "in %.1f s; the old files are kept in %s",
        moved,
        collection,
        vectors,
        target,
        time.perf_counter() - started,
        aside,
    )
    return moved


def _copy_into_shard(vectors: Path, collection: str, target: Path) -> int:
    building = target.with_name(target.name + ".migrating")
    if building.exists():  # left by an interrupted migration: ours, and incomplete
        shutil.rmtree(building)
    try:
        # qdrant-client takes seconds to import: only a data root that needs migrating pays for it.
        from video_assets.store.qdrant_client_index import ClientVectorIndex

        legacy = ClientVectorIndex(path=vectors, collection=collection)
    except Exception as exc:
        raise VectorIndexError(f"cannot read the old local-mode index in {vectors} to migrate it: {exc}") from exc
    try:
        params = legacy.client.get_collection(collection).config.params
        dense = params.vectors.get(DENSE) if isinstance(params.vectors, dict) else None
        if dense is None:
            raise VectorIndexError(f"collection {collection!r} in {vectors} has no {DENSE!r} vector: not migrated")
        expected = legacy.count()
        shard = create_shard(building, dense.size)
        moved = 0
        try:
            batch: list[qe.Point] = []
            for record in legacy.scroll_all(page=_BATCH):
                batch.append(qe.Point(id=str(record.id), vector=_vectors(record.vector), payload=record.payload))
                if len(batch) >= _BATCH:
                    shard.update(qe.UpdateOperation.upsert_points(batch))
                    moved += len(batch)
                    batch = []
            if batch:
                shard.update(qe.UpdateOperation.upsert_points(batch))
                moved += len(batch)
            stored = shard.count(qe.CountRequest(exact=True))
            shard.flush()
        finally:
            shard.close()
    finally:
        legacy.close()
    if not moved == stored == expected:
        shutil.rmtree(building)
        raise VectorIndexError(
            f"migrating {collection!r} from {vectors}: read {moved} of {expected} points, stored {stored}; "
            "the old index is left as it was"
        )
    building.rename(target)
    return moved


def _vectors(vector: Any) -> dict[str, Any]:
    named = vector if isinstance(vector, dict) else {}
    out: dict[str, Any] = {}
    if DENSE in named:
        out[DENSE] = [float(v) for v in named[DENSE]]
    if KEYWORDS in named:
        sparse = named[KEYWORDS]
        out[KEYWORDS] = qe.SparseVector(indices=list(sparse.indices), values=[float(v) for v in sparse.values])
    return out


def _move_aside(vectors: Path, collection: str) -> Path:
    """Move the collection's local-mode files to `<vectors>/local-mode.migrated`, which stays a local-mode root."""
    aside = vectors / MIGRATED_DIR
    (aside / "collection").mkdir(parents=True, exist_ok=True)
    destination = aside / "collection" / collection
    if destination.exists():  # migrated once before, then written again by an old release
        destination = destination.with_name(f"{collection}.{time.strftime('%Y%m%d-%H%M%S')}")
    legacy_collection_path(vectors, collection).rename(destination)
    meta = vectors / "meta.json"
    remaining = vectors / "collection"
    if remaining.is_dir() and not any(remaining.iterdir()):
        remaining.rmdir()
        for name in ("meta.json", ".lock"):
            if (vectors / name).exists():
                (vectors / name).replace(aside / name)
    elif meta.exists():  # other collections still use local mode: keep its config for them too
        shutil.copy2(meta, aside / "meta.json")
    return aside
