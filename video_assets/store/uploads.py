"""The upload bucket behind one small listing interface: a local folder by default.

Layout: `<bucket>/<workspace>/<any/sub/path/name>`. Hidden names (a leading '.') are never listed:
uploaders and `atomic_copy` write under such a name and rename when done. A symbolic link that leads
out of the bucket is never followed: a link to /usr/share/doc must not become a workspace of 300 files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from video_assets.store.atomic import atomic_copy
from video_assets.store.layout import check_workspace


@dataclass(frozen=True)
class UploadedObject:
    uri: str
    workspace: str
    name: str  # relative to the workspace folder
    size: int
    mtime: float


class UploadBucket(Protocol):
    location: str

    def list(self) -> Iterator[UploadedObject]: ...

    def uri(self, workspace: str, name: str) -> str: ...

    def local_path(self, uri: str) -> Path: ...

    def put(self, source: Path, workspace: str, name: str) -> UploadedObject: ...


class LocalFolderBucket:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)

    def list(self) -> Iterator[UploadedObject]:
        if not self.root.is_dir():
            return
        workspaces = (p for p in self.root.iterdir() if not p.name.startswith(".") and self._inside(p))
        for workspace_dir in sorted(p for p in workspaces if p.is_dir()):
            for path in sorted(workspace_dir.rglob("*")):  # rglob never descends into linked folders
                relative = path.relative_to(workspace_dir)
                if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                    continue
                if path.is_symlink() and not self._inside(path):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed between listing and stat
                    continue
                yield UploadedObject(str(path), workspace_dir.name, relative.as_posix(), stat.st_size, stat.st_mtime)

    def uri(self, workspace: str, name: str) -> str:
        return str(self.root / workspace / name)

    def local_path(self, uri: str) -> Path:
        return Path(uri)

    def _inside(self, path: Path) -> bool:
        """False for a link whose target is outside the bucket."""
        return not path.is_symlink() or path.resolve().is_relative_to(self.root)

    def put(self, source: Path, workspace: str, name: str) -> UploadedObject:
        target = self.root / check_workspace(workspace) / name
        if not (target.exists() and target.samefile(source)):
            atomic_copy(source, target)
        stat = target.stat()
        return UploadedObject(str(target), workspace, name, stat.st_size, stat.st_mtime)


def open_bucket(location: str) -> UploadBucket:
    if location.startswith("s3://"):
        raise NotImplementedError(f"S3 upload buckets ({location}) are not supported yet; use a local folder")
    return LocalFolderBucket(location)


@dataclass
class WatchState:
    """What the watcher saw last tick (to tell a growing file) and what it already handled.

    Both maps hold `[size, mtime]` per URI, so a file replaced under the same name is seen again.
    """

    seen: dict[str, list[float]]
    handled: dict[str, list[float]]

    @classmethod
    def parse(cls, cursor: str | None) -> WatchState:
        import json

        data = json.loads(cursor) if cursor else {}
        return cls(data.get("seen", {}), data.get("handled", {}))

    def dump(self) -> str:
        import json

        return json.dumps({"seen": self.seen, "handled": self.handled}, sort_keys=True)


def settled_uploads(
    listing: list[UploadedObject], state: WatchState, *, now: float, settle_seconds: float
) -> tuple[list[UploadedObject], WatchState]:
    """Uploads complete enough to start: unchanged since the last tick, or untouched for `settle_seconds`.

    Returns them and the next state; files still being written are remembered, not returned.
    """
    ready: list[UploadedObject] = []
    seen: dict[str, list[float]] = {}
    present = set()
    for obj in listing:
        signature = [obj.size, obj.mtime]
        present.add(obj.uri)
        if state.handled.get(obj.uri) == signature:
            continue
        if state.seen.get(obj.uri) == signature or now - obj.mtime >= settle_seconds:
            ready.append(obj)
        else:
            seen[obj.uri] = signature
    # Forget files that disappeared, so the cursor does not grow with deleted uploads.
    handled = {uri: sig for uri, sig in state.handled.items() if uri in present}
    return ready, WatchState(seen, handled)
