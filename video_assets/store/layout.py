"""Where everything lives under the data root, and how a partition key names a video."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SEPARATOR = "--"
HASH_CHARS = 16

SEGMENTS_METADATA = "segments_metadata.json"
SEGMENTS_FILE = "segments.json"
TRANSCRIPTS_FILE = "transcripts.json"
CAPTIONS_FILE = "captions.json"
EMBEDDINGS_FILE = "embeddings.json"
DESCRIPTION_FILE = "description.json"
# What the assets after segments store beside segments.json, one file each.
DOWNSTREAM_FILES = (TRANSCRIPTS_FILE, CAPTIONS_FILE, EMBEDDINGS_FILE, DESCRIPTION_FILE)


def check_workspace(workspace: str) -> str:
    if not _WORKSPACE.match(workspace):
        raise ValueError(
            f"workspace {workspace!r} must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    return workspace


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def partition_key(workspace: str, sha256: str) -> str:
    """`<workspace>--<first 16 hex of sha256>`: the same bytes in one workspace are one partition."""
    return f"{check_workspace(workspace)}{_SEPARATOR}{sha256[:HASH_CHARS]}"


def split_partition_key(key: str) -> tuple[str, str]:
    workspace, sep, video_id = key.rpartition(_SEPARATOR)
    if not sep or not workspace or len(video_id) != HASH_CHARS:
        raise ValueError(f"{key!r} is not a video partition key (<workspace>--<16 hex>)")
    return workspace, video_id


@dataclass(frozen=True)
class DataLayout:
    home: Path

    @property
    def staging(self) -> Path:
        return self.home / "staging"

    @property
    def registry_db(self) -> Path:
        return self.home / "registry.sqlite"

    def legacy_registry_files(self) -> list[Path]:
        """`registry/<workspace>/<video id>.json`: the registry before it moved into `registry_db`."""
        return sorted((self.home / "registry").glob("*/*.json"))

    def video_dir(self, key: str) -> Path:
        workspace, video_id = split_partition_key(key)
        return self.home / "segments" / workspace / video_id

    def segments_metadata(self, key: str) -> Path:
        return self.video_dir(key) / SEGMENTS_METADATA

    def segments_file(self, key: str) -> Path:
        return self.video_dir(key) / SEGMENTS_FILE

    def transcripts_file(self, key: str) -> Path:
        return self.video_dir(key) / TRANSCRIPTS_FILE

    def captions_file(self, key: str) -> Path:
        return self.video_dir(key) / CAPTIONS_FILE

    def embeddings_file(self, key: str) -> Path:
        return self.video_dir(key) / EMBEDDINGS_FILE

    def description_file(self, key: str) -> Path:
        return self.video_dir(key) / DESCRIPTION_FILE

    def document_lock(self, key: str) -> Path:
        # Outside the video folder: segments swaps that folder whole, and the lock must outlive the swap.
        workspace, video_id = split_partition_key(key)
        return self.home / "locks" / workspace / f"{video_id}.lock"

    def relative(self, path: str | Path) -> str:
        """`path` as our files store it: relative to the data root, so the root can be moved or restored
        elsewhere. A path outside the root (an upload bucket elsewhere) stays absolute."""
        path = Path(path)
        for inside, root in ((path, self.home), (path.resolve(), self.home.resolve())):
            if inside.is_relative_to(root):
                return inside.relative_to(root).as_posix()
        return str(path)

    def resolve(self, stored: str) -> Path:
        """A stored path on this data root. Data roots written before paths were relative hold absolute
        ones: those are taken as they are."""
        path = Path(stored)
        return path if path.is_absolute() else self.home / path
