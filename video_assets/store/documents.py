"""`segments_metadata.json`, the per-video document in the original worker's format.

segments writes it whole; later assets fill in their field of each segment (transcript, caption)
and the description, each with an atomic rewrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from video_assets.store.atomic import atomic_write_json, read_json


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


def load_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize `segments` for this video first")
    return read_json(path)


def segment_bounds(document: Mapping[str, Any]) -> list[tuple[float, float]]:
    info = document["segments_info"]
    return [(info[k]["start_time"], info[k]["end_time"]) for k in sorted(info, key=int)]


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
