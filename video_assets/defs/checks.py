"""Per-video asset checks (partitioned asset checks), run in the same run as their asset."""

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VectorStoreResource, VideoStoreResource
from video_assets.store.atomic import read_json
from video_assets.store.documents import segment_bounds

COVERAGE_TOLERANCE_SECONDS = 1.0


@dg.asset_check(
    asset="segments",
    partitions_def=videos_partitions,
    blocking=True,
    description="Segments cover the video within 1 s, without gaps.",
)
def segments_cover_duration(context: dg.AssetCheckExecutionContext, store: VideoStoreResource) -> dg.AssetCheckResult:
    document = store.document(context.partition_key)
    bounds = segment_bounds(document)
    gaps = [round(b[0] - a[1], 3) for a, b in zip(bounds, bounds[1:]) if abs(b[0] - a[1]) > 0.01]
    uncovered = (
        abs(bounds[0][0]) + abs(document["total_duration"] - bounds[-1][1]) if bounds else document["total_duration"]
    )
    return dg.AssetCheckResult(
        passed=bool(bounds) and not gaps and uncovered <= COVERAGE_TOLERANCE_SECONDS,
        metadata={"uncovered_seconds": round(uncovered, 3), "gaps": dg.MetadataValue.json(gaps)},
    )


@dg.asset_check(
    asset="segments", partitions_def=videos_partitions, description="Every segment has its sampled frames on disk."
)
def frames_exist(context: dg.AssetCheckExecutionContext, store: VideoStoreResource) -> dg.AssetCheckResult:
    layout = store.layout()
    document = store.document(context.partition_key)
    missing = [
        index
        for index, info in document["segments_info"].items()
        if not info["frame_paths"] or not all(layout.resolve(p).is_file() for p in info["frame_paths"])
    ]
    return dg.AssetCheckResult(passed=not missing, metadata={"segments_missing_frames": dg.MetadataValue.json(missing)})


@dg.asset_check(
    asset="transcripts", partitions_def=videos_partitions, description="A video with audio has a transcript."
)
def transcript_present(context: dg.AssetCheckExecutionContext, store: VideoStoreResource) -> dg.AssetCheckResult:
    layout = store.layout()
    document = store.document(context.partition_key)
    has_audio = bool(document.get("audio_path"))
    words = sum(len(s["words"]) for s in read_json(layout.transcripts_file(context.partition_key))["segments"])
    return dg.AssetCheckResult(
        passed=words > 0 or not has_audio,
        severity=dg.AssetCheckSeverity.WARN,  # music or silence is a valid video, worth a look
        metadata={"has_audio": has_audio, "words": words},
    )


@dg.asset_check(
    asset="captions",
    partitions_def=videos_partitions,
    description="Every segment has a caption, and every sampled frame was read (or reused as a near-duplicate).",
)
def captions_complete(context: dg.AssetCheckExecutionContext, store: VideoStoreResource) -> dg.AssetCheckResult:
    key = context.partition_key
    document = store.document(key)
    captions = {s["index"]: s for s in read_json(store.layout().captions_file(key))["segments"]}
    uncaptioned, unread = [], []
    for index, info in sorted(document["segments_info"].items(), key=lambda kv: int(kv[0])):
        caption = captions.get(int(index))
        if caption is None or not caption["text"].strip():
            uncaptioned.append(int(index))
        read = {frame["time"] for frame in (caption or {}).get("frames", [])}
        unread += [f"{index}@{t:g}s" for t in info["frame_times"] if t not in read]
    return dg.AssetCheckResult(
        passed=not uncaptioned and not unread,
        metadata={
            "segments_without_caption": dg.MetadataValue.json(uncaptioned),
            "frames_not_read": dg.MetadataValue.json(unread),
        },
    )


@dg.asset_check(
    asset="embeddings", partitions_def=videos_partitions, description="Exactly one vector-store point per segment."
)
def one_point_per_segment(
    context: dg.AssetCheckExecutionContext, store: VideoStoreResource, vectors: VectorStoreResource
) -> dg.AssetCheckResult:
    from video_assets.store.vector_index import SEGMENT

    expected = store.document(context.partition_key)["segment_count"]
    with vectors.open() as index:
        stored = index.count(partition_key=context.partition_key, kind=SEGMENT)
    return dg.AssetCheckResult(passed=stored == expected, metadata={"segments": expected, "points": stored})


@dg.asset_check(asset="description", partitions_def=videos_partitions, description="The description is not empty.")
def description_non_empty(context: dg.AssetCheckExecutionContext, store: VideoStoreResource) -> dg.AssetCheckResult:
    text = store.document(context.partition_key)["document_data"]["description"]
    return dg.AssetCheckResult(passed=bool(text.strip()), metadata={"characters": len(text)})


video_checks = [
    segments_cover_duration,
    frames_exist,
    transcript_present,
    captions_complete,
    one_point_per_segment,
    description_non_empty,
]
