"""Which uploaded files hold a video's bytes: one record per partition, every name it arrived under."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from video_assets.store.atomic import atomic_write_json, read_json
from video_assets.store.layout import DataLayout

if TYPE_CHECKING:
    from video_assets.media.probe import MediaInfo
    from video_assets.store.uploads import UploadBucket, UploadedObject


@dataclass(frozen=True)
class SourceFile:
    uri: str  # a local path or s3://bucket/key
    name: str  # the name as uploaded, relative to the workspace folder
    size: int
    mtime: float


@dataclass(frozen=True)
class VideoRecord:
    partition_key: str
    sha256: str
    sources: list[SourceFile]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]


class VideoRegistry:
    def __init__(self, layout: DataLayout):
        self.layout = layout

    def get(self, key: str) -> VideoRecord | None:
        path = self.layout.registry_file(key)
        if not path.exists():
            return None
        data = read_json(path)
        return VideoRecord(data["partition_key"], data["sha256"], [SourceFile(**s) for s in data["sources"]])

    def record(self, key: str, sha256: str, source: SourceFile) -> VideoRecord:
        """Add `source` as a name of video `key`; returns the updated record."""
        path = self.layout.registry_file(key)
        with _locked(path):
            existing = self.get(key)
            sources = [s for s in existing.sources if s.uri != source.uri] if existing else []
            sources.append(source)
            atomic_write_json(
                path,
                {
                    "partition_key": key,
                    "sha256": sha256,
                    "sources": [vars(s) for s in sources],
                    "updated": time.time(),
                },
            )
        return VideoRecord(key, sha256, sources)

    def partition_keys(self) -> list[str]:
        return [f"{p.parent.name}--{p.stem}" for p in self.layout.registry_files()]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The sensor and the CLI may record names of one video at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def register_upload(registry: VideoRegistry, bucket: UploadBucket, obj: UploadedObject) -> VideoRecord:
    """Probe an uploaded object, hash its bytes and record it under its partition key.

    Raises MediaError (naming the file and the cause) for anything that is not a readable video.
    """
    _, sha, key = identify(bucket.local_path(obj.uri), obj.workspace)
    return registry.record(key, sha, SourceFile(obj.uri, obj.name, obj.size, obj.mtime))


def identify(path: Path, workspace: str) -> tuple[MediaInfo, str, str]:
    """(media info, sha256, partition key) of a file; MediaError if it is not a readable video."""
    from video_assets.media.probe import probe
    from video_assets.store.layout import content_hash, partition_key

    info = probe(path)
    sha = content_hash(path)
    return info, sha, partition_key(workspace, sha)
