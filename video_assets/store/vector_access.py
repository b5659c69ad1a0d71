"""Opening the vector index for one piece of work, from a run step, the daemon or the CLI alike.

Without a server the index is a Qdrant Edge shard under `<home>/vectors/edge/<collection>`, which
one process holds at a time: it is opened per use and closed after, and a shard held by another
process is waited for. A data root from before Qdrant Edge is migrated on its first open.
QDRANT_URL switches to a Qdrant server, which serves every process at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from video_assets.settings import Settings
from video_assets.store.vector_index import VectorIndex


def configured_vector_index(
    settings: Settings,
    *,
    url: str = "",
    path: str = "",
    collection: str = "",
    lock_wait_seconds: float = 120.0,
) -> AbstractContextManager[VectorIndex]:
    """The index the settings name (QDRANT_URL, else the shard under <home>/vectors), each argument overriding them.

    `path` replaces the vectors folder (<home>/vectors), not the shard folder. QDRANT_API_KEY is read
    from the environment only, so it never lands in config or metadata.
    """
    return vector_index(
        url=url or settings.qdrant_url or None,
        path=Path(path) if path else settings.vectors_path,
        collection=collection or settings.qdrant_collection,
        api_key=os.environ.get("QDRANT_API_KEY") or None,
        lock_wait_seconds=lock_wait_seconds,
        timeout=settings.qdrant_timeout,
    )


@contextmanager
def vector_index(
    *,
    url: str | None,
    path: Path,
    collection: str,
    api_key: str | None = None,
    lock_wait_seconds: float = 120.0,
    timeout: int = 30,
) -> Iterator[VectorIndex]:
    """A server's collection when `url` is given, else the edge shard of `collection` in the vectors folder `path`."""
    index: VectorIndex
    if url:
        from video_assets.store.qdrant_client_index import ClientVectorIndex

        index = ClientVectorIndex(url=url, api_key=api_key, collection=collection, timeout=timeout)
    else:
        from video_assets.store.qdrant_edge_index import EdgeVectorIndex
        from video_assets.store.vector_migration import edge_shard_path, migrate_local_mode

        vectors = Path(path).expanduser().resolve()
        migrate_local_mode(vectors, collection, lock_wait_seconds=lock_wait_seconds)
        index = EdgeVectorIndex(edge_shard_path(vectors, collection), lock_wait_seconds=lock_wait_seconds)
    try:
        yield index
    finally:
        index.close()
