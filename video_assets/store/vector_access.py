"""Opening the vector index for one piece of work, from a run step or the CLI alike.

Qdrant's embedded local mode lets one client hold a folder at a time, so a local index is opened
per use and closed after, and a folder held by another process is waited for. A server is shared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from video_assets.settings import Settings
from video_assets.store.vector_index import VectorIndex, open_index


def configured_vector_index(
    settings: Settings,
    *,
    url: str = "",
    path: str = "",
    collection: str = "",
    lock_wait_seconds: float = 120.0,
) -> AbstractContextManager[VectorIndex]:
    """The index the settings name (QDRANT_URL or <home>/vectors), each argument overriding them.

    QDRANT_API_KEY is read from the environment only, so it never lands in config or metadata.
    """
    return vector_index(
        url=url or settings.qdrant_url or None,
        path=Path(path) if path else settings.vectors_path,
        collection=collection or settings.qdrant_collection,
        api_key=os.environ.get("QDRANT_API_KEY") or None,
        lock_wait_seconds=lock_wait_seconds,
    )


@contextmanager
def vector_index(
    *, url: str | None, path: Path, collection: str, api_key: str | None = None, lock_wait_seconds: float = 120.0
) -> Iterator[VectorIndex]:
    if url:
        yield open_index(url=url, api_key=api_key, collection=collection)
        return
    path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_wait_seconds
    while True:
        try:
            index = VectorIndex(path=path, collection=collection)
            break
        except Exception as exc:  # qdrant-client raises RuntimeError while another client holds the folder
            if "already accessed" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        yield index
    finally:
        index.close()
