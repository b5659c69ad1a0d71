"""The upload bucket behind one small listing interface: a local folder by default, or S3 (s3_bucket.py).

Layout: `<bucket>/<workspace>/<any/sub/path/name>`. Hidden names (a leading '.') are never listed:
uploaders and `atomic_copy` write under such a name and rename when done. A symbolic link that leads
out of the bucket is never followed: a link to /usr/share/doc must not become a workspace of 300 files.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from video_assets.store.atomic import atomic_copy
from video_assets.store.layout import check_workspace

# Told about a folder or file the listing could not read: (its path, the error).
ListingError = Callable[[str, OSError], None]


@dataclass(frozen=True)
class UploadedObject:
    uri: str
    workspace: str
    name: str  # relative to the workspace folder
    size: int
    mtime: float


class UploadBucket(Protocol):
    location: str

    def list(self, on_error: ListingError | None = None) -> Iterator[UploadedObject]: ...

    def uri(self, workspace: str, name: str) -> str: ...

    def stat(self, workspace: str, name: str) -> UploadedObject | None: ...

    def local_path(self, uri: str) -> Path: ...

    def release(self, uri: str) -> None: ...

    def put(self, source: Path, workspace: str, name: str) -> UploadedObject: ...

    def remove(self, workspace: str, name: str) -> bool: ...


class LocalFolderBucket:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)

    def list(self, on_error: ListingError | None = None) -> Iterator[UploadedObject]:
        """Every visible file, workspace by workspace, in path order; one scandir per folder."""
        try:
            workspaces = _entries(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in workspaces:
            # A workspace may be a link to a folder inside the bucket; deeper linked folders are never walked.
            if _visible(entry, on_error) and entry.is_dir() and self._inside(entry):
                yield from self._walk(entry.path, entry.name, "", on_error)

    def _walk(
        self, folder: str, workspace: str, prefix: str, on_error: ListingError | None
    ) -> Iterator[UploadedObject]:
        try:
            entries = _entries(folder)
        except OSError as exc:
            if on_error:
                on_error(folder, exc)
            return
        for entry in entries:
            if not _visible(entry, on_error):
                continue
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, workspace, name + "/", on_error)
                continue
            # A linked folder is never walked: it would list files twice, or loop, or leave the bucket.
            if not entry.is_file() or not self._inside(entry):
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:  # removed between listing and stat
                continue
            except OSError as exc:
                if on_error:
                    on_error(entry.path, exc)
                continue
            yield UploadedObject(entry.path, workspace, name, stat.st_size, stat.st_mtime)

    def uri(self, workspace: str, name: str) -> str:
        return str(self.root / workspace / name)

    def stat(self, workspace: str, name: str) -> UploadedObject | None:
        path = self.root / check_workspace(workspace) / name
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return UploadedObject(str(path), workspace, name, stat.st_size, stat.st_mtime) if path.is_file() else None

    def local_path(self, uri: str) -> Path:
        return Path(uri)

    def release(self, uri: str) -> None:
        """The file is the upload itself: nothing to remove."""

    def _inside(self, entry: os.DirEntry) -> bool:
        """False for a link whose target is outside the bucket."""
        return not entry.is_symlink() or Path(entry.path).resolve().is_relative_to(self.root)

    def put(self, source: Path, workspace: str, name: str) -> UploadedObject:
        target = self.root / check_workspace(workspace) / name
        if not (target.exists() and target.samefile(source)):
            atomic_copy(source, target)
        stat = target.stat()
        return UploadedObject(str(target), workspace, name, stat.st_size, stat.st_mtime)

    def remove(self, workspace: str, name: str) -> bool:
        """Delete an upload; False if it was not there. A link is removed, never what it points to."""
        path = self.root / check_workspace(workspace) / name
        if not path.parent.resolve().is_relative_to(self.root):
            raise ValueError(f"{path}: not inside the upload bucket {self.root}")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True


def open_bucket(location: str, cache_dir: Path | None = None) -> UploadBucket:
    """A folder, or `s3://bucket/prefix` whose objects are copied into `cache_dir` to be read."""
    if location.startswith("s3://"):
        from video_assets.store.s3_bucket import S3Bucket

        if cache_dir is None:
            raise ValueError(f"{location}: an S3 upload bucket needs a working folder for its local copies")
        return S3Bucket(location, cache_dir)
    return LocalFolderBucket(location)


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as listing:
        return sorted(listing, key=lambda entry: entry.name)


def _visible(entry: os.DirEntry, on_error: ListingError | None) -> bool:
    """Not hidden, and a name every store can hold: bytes that are not UTF-8 are reported, not listed."""
    if entry.name.startswith("."):
        return False
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:
        if on_error:
            on_error(entry.path, OSError(errno.EILSEQ, "the name is not valid UTF-8: rename it to have it processed"))
        return False
    return True


@dataclass
class Settling:
    """Uploads seen but not yet complete, `[size, mtime]` per workspace and name: the sensor's cursor.

    Only files still changing are kept: what was handled lives in the registry, so the cursor stays
    as small as the number of uploads in flight.
    """

    seen: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> Settling:
        data = json.loads(cursor) if cursor else {}
        # An older cursor (seen/handled by URI) only cost a re-check of files the registry already knows.
        return cls(data.get("settling", {}) if isinstance(data, dict) else {})

    def dump(self) -> str:
        return json.dumps({"settling": self.seen}, sort_keys=True, separators=(",", ":"))

    def get(self, workspace: str, name: str) -> tuple[int, float] | None:
        signature = self.seen.get(workspace, {}).get(name)
        return (int(signature[0]), float(signature[1])) if signature else None

    def add(self, obj: UploadedObject) -> None:
        self.seen.setdefault(obj.workspace, {})[obj.name] = [obj.size, obj.mtime]

    def __len__(self) -> int:
        return sum(len(names) for names in self.seen.values())


@dataclass
class UploadSort:
    """One listing sorted: what is complete and new, what is still settling, how much was known."""

    ready: list[UploadedObject]  # oldest first
    settling: Settling
    known: int


def sort_uploads(
    listing: Iterable[UploadedObject],
    known: dict[tuple[str, str], tuple[int, float]],
    previous: Settling,
    *,
    now: float,
    settle_seconds: float,
) -> UploadSort:
    """Split a listing into uploads ready to register and uploads still being written.

    A file the registry knows at its current (size, mtime) is skipped: registered or rejected, it
    needs no probe and no hash. Any other file is ready once its mtime is `settle_seconds` old and,
    if it was seen before, its size and mtime have not changed since: an upload that stalls for less
    than that never becomes a video of its first half.
    """
    ready: list[UploadedObject] = []
    settling = Settling()
    skipped = 0
    for obj in listing:
        signature = (obj.size, obj.mtime)
        if known.get((obj.workspace, obj.name)) == signature:
            skipped += 1
            continue
        seen = previous.get(obj.workspace, obj.name)
        if now - obj.mtime >= settle_seconds and seen in (None, signature):
            ready.append(obj)
        else:
            settling.add(obj)
    ready.sort(key=lambda obj: obj.mtime)  # oldest first: no workspace waits behind another's backlog
    return UploadSort(ready, settling, skipped)
