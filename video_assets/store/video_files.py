"""A video's files under the data root as a whole: which videos have a folder, their size, removal."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from video_assets.store.layout import HASH_CHARS, DataLayout, check_workspace, partition_key

# What `replace_directory` and `remove_video_folder` leave for a moment beside a video folder.
_PASSING_SUFFIXES = (".retired", ".deleting")


@dataclass(frozen=True)
class VideoFolder:
    partition_key: str
    path: Path


def video_folders(layout: DataLayout) -> list[VideoFolder]:
    """Every `segments/<workspace>/<video id>` folder, whatever the registry or Dagster say."""
    root = layout.home / "segments"
    if not root.is_dir():
        return []
    found = []
    for workspace_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            check_workspace(workspace_dir.name)
        except ValueError:
            continue
        for folder in sorted(workspace_dir.iterdir()):
            video_id = folder.name
            if folder.is_dir() and len(video_id) == HASH_CHARS and all(c in "0123456789abcdef" for c in video_id):
                found.append(VideoFolder(partition_key(workspace_dir.name, video_id), folder))
    return found


def leftover_folders(layout: DataLayout) -> list[Path]:
    """Folders a swap or a removal was interrupted in the middle of (`<id>.retired`, `<id>.deleting`)."""
    root = layout.home / "segments"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*") if p.is_dir() and p.name.endswith(_PASSING_SUFFIXES))


def tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def remove_tree(path: Path) -> int:
    """Remove a folder; returns the bytes freed. Renamed aside first, so no reader ever sees half of it,
    and a removal interrupted half-way leaves a `.deleting` folder the cleanup finishes."""
    if not path.exists():
        return 0
    size = tree_bytes(path)
    doomed = path if path.name.endswith(_PASSING_SUFFIXES) else path.with_name(path.name + ".deleting")
    if doomed != path:
        if doomed.exists():
            shutil.rmtree(doomed)
        path.replace(doomed)
    shutil.rmtree(doomed)
    return size


def remove_video_folder(layout: DataLayout, key: str) -> int:
    return remove_tree(layout.video_dir(key))


def staging_folders(layout: DataLayout) -> list[tuple[str, str, Path]]:
    """(partition key, run id, path) of every `staging/<key>.<run id>` folder."""
    if not layout.staging.is_dir():
        return []
    found = []
    for path in sorted(layout.staging.iterdir()):
        key, dot, run_id = path.name.partition(".")
        if dot:
            found.append((key, run_id, path))
    return found
