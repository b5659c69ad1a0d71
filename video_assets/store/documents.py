"""`segments_metadata.json`, the per-video document in the original worker's format.

segments writes it whole; later assets fill in their field of each segment (transcript, caption)
and the description, each with an atomic rewrite.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from video_assets.store.atomic import atomic_write_json, read_json
from video_assets.store.layout import DOWNSTREAM_FILES, SEGMENTS_METADATA


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


def carry_forward(old_dir: Path, staging: Path, document: dict[str, Any]) -> list[str]:
    """Keep later assets' results when a rerun of segments produced the very same segments.

    Same boundaries mean the same data version, so Dagster keeps transcripts, captions and the rest
    synced; their files and their fields in the document must then survive the rebuild. Different
    boundaries leave them behind: Dagster marks those assets unsynced and they are rebuilt.
    """
    old_path = old_dir / SEGMENTS_METADATA
    if not old_path.exists():
        return []
    old = read_json(old_path)
    if segment_bounds(old) != segment_bounds(document):
        return []
    for key, info in document["segments_info"].items():
        info["transcript"] = old["segments_info"][key].get("transcript", "")
        info["caption"] = old["segments_info"][key].get("caption", "")
    document["document_data"]["description"] = old["document_data"].get("description", "")
    kept = []
    for name in DOWNSTREAM_FILES:
        if (old_dir / name).exists():
            shutil.copy2(old_dir / name, staging / name)
            kept.append(name)
    return kept


def load_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize `segments` for this video first")
    return read_json(path)


def segment_list(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The segments in order, with the fields the later assets read."""
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


def set_segment_field(path: Path, field: str, values: list[str]) -> None:
    document = load_document(path)
    info = document["segments_info"]
    if len(values) != len(info):
        raise ValueError(f"{path}: {len(values)} values for {len(info)} segments")
    for key, value in zip(sorted(info, key=int), values):
        info[key][field] = value
    atomic_write_json(path, document)


def set_description(path: Path, description: str) -> None:
    document = load_document(path)
    document["document_data"]["description"] = description
    atomic_write_json(path, document)
