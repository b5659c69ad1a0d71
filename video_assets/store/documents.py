"""Each asset's own file, and `segments_metadata.json` assembled from them.

segments stores `segments.json`; transcripts, captions and description store `transcripts.json`,
`captions.json` and `description.json`. No asset ever writes another one's file, so reruns and runs
that overlap cannot undo each other's results. `segments_metadata.json`, the per-video document in
the original worker's format, is an export: a pure function of those files, rebuilt whole after each
asset stores its own. The pipeline reads the files themselves (or the assembly in memory), never the
export.

Paths inside the files are relative to the data root (see `DataLayout.relative`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from video_assets.store.atomic import atomic_write_json, locked, read_json, replace_directory
from video_assets.store.layout import (
    CAPTIONS_FILE,
    DESCRIPTION_FILE,
    DOWNSTREAM_FILES,
    SEGMENTS_FILE,
    SEGMENTS_METADATA,
    TRANSCRIPTS_FILE,
    DataLayout,
)

# What segments.json holds beyond its rows, copied into the document after the original fields.
_EXTRA = ("partition_key", "files", "sha256", "media", "cut_method", "audio_path")


def new_document(
    *,
    video_name: str,
    file_size: int,
    duration: float,
    segments: list[dict[str, Any]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "processing_completed": True,
        "segment_count": len(segments),
        "total_duration": round(duration, 3),
        "segments_info": {
            str(seg["index"]): {
                "segment_name": seg["name"],
                "start_time": seg["start"],
                "end_time": seg["end"],
                "frame_times": seg["frame_times"],
                "frame_paths": seg["frame_paths"],
                "video_segment_path": seg["path"],
                "transcript": "",
                "caption": "",
            }
            for seg in segments
        },
        "document_data": {
            "description": "",
            "document_metadata": {
                "video_name": video_name,
                "file_size": file_size,
                "video_duration": round(duration, 3),
                "total_segments": len(segments),
            },
        },
        **extra,
    }


def new_segments_record(
    *,
    partition_key: str,
    video_name: str,
    files: list[str],
    sha256: str,
    file_size: int,
    duration: float,
    media: Mapping[str, Any],
    cut_method: str,
    audio_path: str | None,
    segments: list[dict[str, Any]],
) -> dict[str, Any]:
    """The content of `segments.json`. `segments` rows: index, name, start, end, frame_times,
    frame_paths and path, the paths relative to the data root."""
    return {
        "partition_key": partition_key,
        "video_name": video_name,
        "files": files,
        "sha256": sha256,
        "file_size": file_size,
        "duration": duration,
        "media": dict(media),
        "cut_method": cut_method,
        "audio_path": audio_path,
        "segments": segments,
    }


def read_segments(video_dir: Path) -> dict[str, Any]:
    """`segments.json` of a video folder; for a folder written before it existed, the same read from
    the document that folder holds."""
    path = video_dir / SEGMENTS_FILE
    if path.exists():
        return read_json(path)
    legacy = video_dir / SEGMENTS_METADATA
    if legacy.exists():
        return _record_from_document(read_json(legacy))
    raise FileNotFoundError(f"{path} does not exist: materialize `segments` for this video first")


def _record_from_document(document: Mapping[str, Any]) -> dict[str, Any]:
    info = document["segments_info"]
    meta = document["document_data"]["document_metadata"]
    return new_segments_record(
        partition_key=document.get("partition_key", ""),
        video_name=meta["video_name"],
        files=document.get("files") or [meta["video_name"]],
        sha256=document.get("sha256", ""),
        file_size=meta["file_size"],
        duration=document["total_duration"],
        media=document.get("media") or {},
        cut_method=document.get("cut_method", ""),
        audio_path=document.get("audio_path"),
        segments=[
            {
                "index": int(k),
                "name": info[k]["segment_name"],
                "start": info[k]["start_time"],
                "end": info[k]["end_time"],
                "frame_times": info[k]["frame_times"],
                "frame_paths": info[k]["frame_paths"],
                "path": info[k]["video_segment_path"],
            }
            for k in sorted(info, key=int)
        ],
    )


def assemble(video_dir: Path) -> dict[str, Any]:
    """The document in the original worker's format, from the files in `video_dir` alone."""
    record = read_segments(video_dir)
    document = new_document(
        video_name=record["video_name"],
        file_size=record["file_size"],
        duration=record["duration"],
        segments=record["segments"],
        extra={name: record[name] for name in _EXTRA},
    )
    info = document["segments_info"]
    for field, name in (("transcript", TRANSCRIPTS_FILE), ("caption", CAPTIONS_FILE)):
        for index, text in _segment_texts(video_dir / name, len(info)).items():
            info[str(index)][field] = text
    description = video_dir / DESCRIPTION_FILE
    if description.exists():
        document["document_data"]["description"] = read_json(description).get("text") or ""
    return document


def _segment_texts(path: Path, count: int) -> dict[int, str]:
    if not path.exists():
        return {}
    rows = read_json(path)["segments"]
    if len(rows) != count:  # made for other segments (a run that overlapped a segments rerun): not these
        return {}
    return {row["index"]: row["text"] for row in rows}


def assemble_document(layout: DataLayout, key: str) -> dict[str, Any]:
    return assemble(layout.video_dir(key))


def write_document(layout: DataLayout, key: str) -> dict[str, Any]:
    """Rebuild `segments_metadata.json` from the files as they are now.

    Under the video's lock, so an assembly that read the files earlier cannot replace one that read
    them later; every writer stores its own file before it assembles, so the last assembly sees all.
    """
    with locked(layout.document_lock(key)):
        document = assemble_document(layout, key)
        atomic_write_json(layout.segments_metadata(key), document)
    return document


def store_segments(layout: DataLayout, key: str, staging: Path, record: dict[str, Any]) -> list[str]:
    """Swap a finished staging folder in as the video's folder, with `segments.json` and the document.

    Returns the later assets' files kept from the previous folder (see `carry_forward`).
    """
    final_dir = layout.video_dir(key)
    with locked(layout.document_lock(key)):
        kept = carry_forward(final_dir, staging, record)
        atomic_write_json(staging / SEGMENTS_FILE, record)
        atomic_write_json(staging / SEGMENTS_METADATA, assemble(staging))
        replace_directory(staging, final_dir)  # a failed run never replaced what an earlier run stored
    return kept


def carry_forward(old_dir: Path, staging: Path, record: Mapping[str, Any]) -> list[str]:
    """Keep later assets' files when a rerun of segments produced the very same segments.

    Same boundaries mean the same data version, so Dagster keeps transcripts, captions and the rest
    synced; their files must then survive the rebuild. Different boundaries leave them behind: Dagster
    marks those assets unsynced and they are rebuilt.
    """
    try:
        old = read_segments(old_dir)
    except FileNotFoundError:
        return []
    if _bounds(old) != _bounds(record):
        return []
    kept = []
    for name in DOWNSTREAM_FILES:
        if (old_dir / name).exists():
            shutil.copy2(old_dir / name, staging / name)
            kept.append(name)
    return kept


def _bounds(record: Mapping[str, Any]) -> list[tuple[float, float]]:
    return [(row["start"], row["end"]) for row in record["segments"]]


def segment_list(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The segments of an assembled document in order, with the fields the later assets read."""
    info = document["segments_info"]
    return [
        {
            "index": int(k),
            "start": info[k]["start_time"],
            "end": info[k]["end_time"],
            "frame_times": info[k]["frame_times"],
            "frame_paths": info[k]["frame_paths"],
            "transcript": info[k].get("transcript", ""),
            "caption": info[k].get("caption", ""),
        }
        for k in sorted(info, key=int)
    ]


def segment_bounds(document: Mapping[str, Any]) -> list[tuple[float, float]]:
    return [(seg["start"], seg["end"]) for seg in segment_list(document)]
