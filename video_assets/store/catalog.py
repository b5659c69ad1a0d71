"""What the search page shows, read from the data root: no web code here.

The videos of a workspace, one video's segments with their thumbnails and clips, and which file
plays. **Which file plays**: the original upload, when the registry still knows a local copy of it
inside the upload bucket or the data root (the player then seeks to a segment's start); else (the
upload was deleted after its run, or the bucket is S3) each segment's own clip under the data root,
which starts at the segment's start (`offset`). Every path served is resolved and must stay inside
the video's folder, the data root or the local upload bucket; anything else is "not found".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from video_assets.store.documents import assemble, read_segments
from video_assets.store.layout import DataLayout, check_workspace, split_partition_key
from video_assets.store.registry import VideoRegistry

_VIDEO_ID = re.compile(r"^[0-9a-f]{16}$")


class NotFound(LookupError):
    """No such video in this workspace, or a path that is not ours to serve."""


def check_partition(key: str, workspace: str | None = None) -> str:
    """`key` if it names a video partition (of `workspace`, when given); NotFound otherwise."""
    try:
        owner, video_id = split_partition_key(key)
        check_workspace(owner)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    if not _VIDEO_ID.match(video_id) or (workspace is not None and owner != workspace):
        raise NotFound(f"no video {key!r} in workspace {workspace!r}")
    return key


def contained(path: Path, roots: list[Path]) -> Path | None:
    """`path` resolved (symlinks followed) if it is a file inside one of `roots`, else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file():
        return None
    return real if any(real.is_relative_to(root.resolve()) for root in roots) else None


def file_in_video(layout: DataLayout, key: str, relative: str) -> Path:
    """A file of the video's folder named relative to it (a frame, a clip): no absolute paths, no `..`,
    no symlink out of the folder."""
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts or "\\" in relative:
        raise NotFound(relative)
    folder = layout.video_dir(key)
    found = contained(folder / rel, [folder, layout.home])
    if found is None or not found.is_relative_to(folder.resolve()):
        raise NotFound(relative)
    return found


@dataclass
class Catalog:
    layout: DataLayout
    registry: VideoRegistry
    bucket_root: Path | None = None  # the local upload bucket; None for S3
    _roots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._roots = [self.layout.home] + ([self.bucket_root] if self.bucket_root else [])

    def videos(self, workspace: str) -> list[dict[str, Any]]:
        check_workspace(workspace)
        rows = []
        for key in self.registry.partition_keys():
            owner, _ = split_partition_key(key)
            if owner != workspace:
                continue
            record = self.registry.get(key)
            try:
                segments = read_segments(self.layout.video_dir(key))
            except (FileNotFoundError, ValueError, KeyError):
                segments = None
            rows.append(
                {
                    "partition": key,
                    "file": (record.names[0] if record and record.names else segments and segments["video_name"]) or "",
                    "files": record.names if record else [],
                    "duration": segments["duration"] if segments else None,
                    "segment_count": len(segments["segments"]) if segments else 0,
                    "thumbnail": self._thumbnail(key, segments["segments"][0])
                    if segments and segments["segments"]
                    else None,
                }
            )
        return sorted(rows, key=lambda row: (row["file"].lower(), row["partition"]))

    def video(self, key: str, workspace: str | None = None) -> dict[str, Any]:
        check_partition(key, workspace)
        folder = self.layout.video_dir(key)
        try:
            document = assemble(folder)
            record = read_segments(folder)
        except FileNotFoundError:
            raise NotFound(f"no segments for {key!r}") from None
        info = document["segments_info"]
        original = self.original(key)
        segments = []
        for row in record["segments"]:
            seg = info[str(row["index"])]
            segments.append(
                {
                    "index": row["index"],
                    "start": row["start"],
                    "end": row["end"],
                    "transcript": seg.get("transcript", ""),
                    "caption": seg.get("caption", ""),
                    "thumbnail": self._thumbnail(key, row),
                    "clip": self._in_video(key, row["path"]),
                }
            )
        registered = self.registry.get(key)
        return {
            "partition": key,
            "workspace": split_partition_key(key)[0],
            "file": registered.names[0] if registered and registered.names else record["video_name"],
            "files": registered.names if registered else record.get("files", []),
            "duration": record["duration"],
            "description": document["document_data"].get("description", ""),
            "original": original is not None,
            "segments": segments,
        }

    def original(self, key: str) -> Path | None:
        """The upload itself, if a local copy is still there, inside the bucket or the data root."""
        record = self.registry.get(key)
        candidates = [Path(s.uri) for s in record.sources if "://" not in s.uri] if record else []
        try:
            media_path = read_segments(self.layout.video_dir(key)).get("media", {}).get("path")
        except (FileNotFoundError, ValueError):
            media_path = None
        if media_path and "://" not in media_path:
            candidates.append(self.layout.resolve(media_path))
        for candidate in candidates:
            found = contained(candidate, self._roots)
            if found is not None:
                return found
        return None

    def _thumbnail(self, key: str, row: dict[str, Any]) -> str | None:
        frames = row.get("frame_paths") or []
        return self._in_video(key, frames[len(frames) // 2]) if frames else None

    def _in_video(self, key: str, stored: str | None) -> str | None:
        """A stored path (relative to the data root) as a path relative to the video's folder."""
        if not stored:
            return None
        path = self.layout.resolve(stored)
        folder = self.layout.video_dir(key)
        return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else None
