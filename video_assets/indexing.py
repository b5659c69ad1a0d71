"""What a video puts into the search index, built from what the pipeline stored on disk.

The `embeddings` and `description` assets and `video-assets reindex` build their points here, so a
re-index from the stored texts gives exactly the points the assets would have written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from video_assets.models.embedder import TextEmbedder, dense_text, segment_text
from video_assets.store.atomic import read_json
from video_assets.store.documents import assemble, segment_list
from video_assets.store.layout import (
    DESCRIPTION_FILE,
    SEGMENTS_FILE,
    SEGMENTS_METADATA,
    DataLayout,
    split_partition_key,
)
from video_assets.store.vector_index import DESCRIPTION, SEGMENT, IndexedText, VectorIndex


def video_language(layout: DataLayout, key: str) -> str | None:
    """The language Whisper detected for the video, None when it has no speech."""
    path = layout.transcripts_file(key)
    return (read_json(path).get("language") or None) if path.exists() else None


def segment_texts(document: Mapping[str, Any]) -> list[str]:
    return [segment_text(seg["caption"], seg["transcript"]) for seg in segment_list(document)]


def segment_points(
    document: Mapping[str, Any], key: str, embedder: TextEmbedder, *, language: str | None
) -> list[IndexedText]:
    segments = segment_list(document)
    texts = [segment_text(seg["caption"], seg["transcript"]) for seg in segments]
    dense = embedder.embed([dense_text(seg["caption"], seg["transcript"]) for seg in segments])
    sparse = embedder.sparse(texts)
    return [
        IndexedText(
            index=seg["index"],
            text=text,
            dense=dense[i].tolist(),
            sparse=sparse[i],
            payload=point_payload(document, key, seg["start"], seg["end"], embedder.name, language),
        )
        for i, (seg, text) in enumerate(zip(segments, texts))
    ]


def description_point(
    document: Mapping[str, Any], key: str, text: str, embedder: TextEmbedder, *, language: str | None
) -> IndexedText:
    return IndexedText(
        index=None,
        text=text,
        dense=embedder.embed([text])[0].tolist(),
        sparse=embedder.sparse([text])[0],
        payload=point_payload(document, key, 0.0, document["total_duration"], embedder.name, language),
    )


def point_payload(
    document: Mapping[str, Any], key: str, start: float, end: float, model: str, language: str | None
) -> dict[str, Any]:
    workspace, _ = split_partition_key(key)
    return {
        "workspace": workspace,
        "partition_key": key,
        "files": document["files"],
        "start": start,
        "end": end,
        "model": model,
        "language": language,
    }


@dataclass
class ReindexReport:
    videos: int = 0
    segment_points: int = 0
    description_points: int = 0
    skipped: list[str] = field(default_factory=list)  # "<folder>: <why>"


def stored_videos(layout: DataLayout) -> Iterator[tuple[str, Path]]:
    """(partition key, folder) of every video whose segments are stored; a folder written before
    segments.json existed holds only the document."""
    for folder in sorted(p for p in (layout.home / "segments").glob("*/*") if p.is_dir()):
        if (folder / SEGMENTS_FILE).exists() or (folder / SEGMENTS_METADATA).exists():
            yield f"{folder.parent.name}--{folder.name}", folder


def reindex(layout: DataLayout, index: VectorIndex, embedder: TextEmbedder) -> ReindexReport:
    """Rebuild the index from the stored texts with `embedder`: every point is written anew.

    The collection is dropped first (a new model may have another dimension), so run it when nothing
    else writes to the index; the stored texts stay, so an interrupted re-index is simply run again.
    """
    report = ReindexReport()
    index.drop_collection()
    index.ensure_collection(embedder.dimension, embedder.name)
    for key, folder in stored_videos(layout):
        try:
            split_partition_key(key)
            document = assemble(folder)
        except (OSError, ValueError) as exc:
            report.skipped.append(f"{folder}: {exc}")
            continue
        except KeyError as exc:
            report.skipped.append(f"{folder}: no field {exc} in its stored files")
            continue
        language = video_language(layout, key)
        points = segment_points(document, key, embedder, language=language)
        report.segment_points += index.replace_partition_points(key, points, kind=SEGMENT)
        description = _stored_description(folder)
        if description:
            point = description_point(document, key, description, embedder, language=language)
            report.description_points += index.replace_partition_points(key, [point], kind=DESCRIPTION)
        report.videos += 1
    return report


def _stored_description(video_dir: Path) -> str:
    path = video_dir / DESCRIPTION_FILE
    return str(read_json(path).get("text") or "") if path.exists() else ""
