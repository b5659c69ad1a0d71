"""The per-video assets: segments -> transcripts (-> captions -> embeddings -> description).

Each asset reads what the one before it stored under the data root and writes its own files
atomically; the Dagster layer only adds partitions, metadata, pools and failure reporting.
"""

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import dagster as dg

from video_assets.defs.common import digest, fail, timed_excerpt, video_asset, visible_devices
from video_assets.defs.resources import VideoStoreResource, WhisperResource
from video_assets.media.audio import read_wav_16k
from video_assets.media.contact_sheet import as_markdown_image, contact_sheet
from video_assets.media.errors import MediaError
from video_assets.media.probe import MediaInfo, probe
from video_assets.media.segmenter import AUDIO_FILE, FRAMES_DIR, SplitResult, split_video
from video_assets.models.whisper import assign_words, join_words, words_as_dicts
from video_assets.settings import Settings
from video_assets.store.atomic import atomic_write_json
from video_assets.store.documents import new_segments_record, segment_bounds, store_segments
from video_assets.store.layout import DataLayout, content_hash, split_partition_key
from video_assets.store.registry import VideoRecord
from video_assets.store.uploads import UploadBucket


class SegmentsConfig(dg.Config):
    """Unset values come from the settings (VIDEO_SEGMENT_LENGTH and friends)."""

    segment_length: float | None = None
    min_segment_length: float | None = None
    frames_per_segment: int | None = None


def build_segments(retry_policy: dg.RetryPolicy, op_tags: dict[str, str] | None = None) -> dg.AssetsDefinition:
    @video_asset(
        kinds={"ffmpeg", "video"},
        pool="media",
        op_tags=op_tags,
        # v2: segments.json of its own, paths relative to the data root.
        code_version="segments-2",
        retry_policy=retry_policy,  # reading the upload from an object store can fail for a moment
        description="Fixed-length segments (stream copy where keyframes allow), sampled frames and 16 kHz audio.",
    )
    def segments(
        context: dg.AssetExecutionContext, config: SegmentsConfig, store: VideoStoreResource
    ) -> dg.MaterializeResult:
        return cut_video(context, config, store)

    return segments


def cut_video(
    context: dg.AssetExecutionContext, config: SegmentsConfig, store: VideoStoreResource
) -> dg.MaterializeResult:
    key = context.partition_key
    settings = store.settings()
    layout = store.layout()
    record = store.registry().get(key)
    if record is None:
        raise fail(context, f"video {key}: no upload is recorded for this partition (was it deleted?)")
    bucket = store.bucket()
    present, source = _with_recorded_bytes(bucket, record)
    if not present:
        raise fail(context, f"video {key}: none of its uploaded files exists any more: {', '.join(record.names)}")
    if source is None:
        names = ", ".join(present)
        raise fail(
            context,
            f"video {key}: the bytes of {names} changed since it was registered (overwritten, or still being "
            "written then): this partition is named after other bytes, so nothing was processed; the file as it "
            "is now becomes a partition of its own",
        )

    started = time.perf_counter()
    _remove_staging_of_dead_runs(context, layout.staging, key)
    staging = layout.staging / f"{key}.{context.run.run_id}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        return _split_into_place(context, config, settings, layout, record, source, staging, started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone on success (swapped in) and on any failure
        bucket.release(source.uri)  # an S3 object's local copy: cut, it is needed no more


def _split_into_place(
    context: dg.AssetExecutionContext,
    config: SegmentsConfig,
    settings: Settings,
    layout: DataLayout,
    record: VideoRecord,
    source: "_Source",
    staging: Path,
    started: float,
) -> dg.MaterializeResult:
    key = context.partition_key
    try:
        info = probe(source.path)
        split = split_video(
            info,
            staging,
            segment_length=config.segment_length or settings.segment_length,
            min_segment_length=(
                settings.min_segment_length if config.min_segment_length is None else config.min_segment_length
            ),
            frames_per_segment=config.frames_per_segment or settings.frames_per_segment,
        )
    except MediaError as exc:
        raise fail(context, exc, file=exc.path, cause=exc.cause) from exc

    final_dir = layout.video_dir(key)
    segment_rows = _segment_rows(split, layout, final_dir)
    segments_record = new_segments_record(
        partition_key=key,
        video_name=record.names[0],
        files=record.names,
        sha256=record.sha256,
        file_size=info.size,
        duration=info.duration,
        # The upload that was cut: relative too when the bucket is the data root's own uploads/ folder.
        # An S3 object's local copy is removed after the cut: its URI is what names it.
        media=info.as_dict() | {"path": source.uri if "://" in source.uri else layout.relative(info.path)},
        cut_method=split.method,
        audio_path=layout.relative(final_dir / AUDIO_FILE) if split.audio_path else None,
        segments=segment_rows,
    )
    kept = store_segments(layout, key, staging, segments_record)
    if kept:
        context.log.info(f"{key}: same segments as before; kept {', '.join(kept)}")

    durations = [round(row["end"] - row["start"], 3) for row in segment_rows]
    timings = {
        **{k: round(v, 3) for k, v in split.timings.items()},
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    context.log.info(
        f"{record.names[0]}: {len(segment_rows)} segments by {split.method} in {timings['total_seconds']} s"
    )
    return dg.MaterializeResult(
        metadata={
            "files": dg.MetadataValue.json(record.names),
            "size_bytes": info.size,
            "duration_seconds": round(info.duration, 3),
            "container": info.container,
            "video_codec": info.video_codec,
            "audio_codec": info.audio_codec or "none",
            # With several tracks, which one is transcribed (and kept in the segment files).
            "audio_track": _audio_track_label(info),
            "fps": info.fps,
            "resolution": f"{info.width}x{info.height}",
            "rotation": info.rotation,
            "segment_count": len(segment_rows),
            "segment_durations": dg.MetadataValue.json(durations),
            "cut_method": split.method,
            "timings": dg.MetadataValue.json(timings),
            "segments": dg.MetadataValue.md(_segments_table(segment_rows)),
            "contact_sheet": dg.MetadataValue.md(
                as_markdown_image(
                    contact_sheet([[(f.time, f.thumbnail) for f in seg.frames] for seg in split.segments]),
                    f"sampled frames of {record.names[0]}",
                )
            ),
            "path": dg.MetadataValue.path(str(final_dir)),
            # The video's page in `video-assets serve` (VIDEO_ASSETS_WEB_URL): its segments, playable.
            "video_page": dg.MetadataValue.url(video_page_url(settings, key)),
        },
        data_version=dg.DataVersion(
            digest([record.sha256, [(r["start"], r["end"], r["frame_times"]) for r in segment_rows]])
        ),
    )


def build_transcripts(code_version: str, op_tags: dict[str, str] | None = None) -> dg.AssetsDefinition:
    """op_tags: the `dagster-k8s/config` GPU request with the k8s executor (defs/k8s.py), else None."""

    @video_asset(
        name="transcripts",
        deps=["segments"],
        kinds={"whisper"},
        pool="gpu",
        op_tags=op_tags,
        code_version=code_version,
        description="One faster-whisper pass over the whole audio; words assigned to segments by their timestamps.",
    )
    def transcripts(
        context: dg.AssetExecutionContext, store: VideoStoreResource, whisper: WhisperResource
    ) -> dg.MaterializeResult:
        return transcribe_video(context, store, whisper)

    return transcripts


def transcribe_video(
    context: dg.AssetExecutionContext, store: VideoStoreResource, whisper: WhisperResource
) -> dg.MaterializeResult:
    key = context.partition_key
    layout = store.layout()
    document = store.document(key)
    bounds = segment_bounds(document)
    started = time.perf_counter()
    audio_path = layout.resolve(document["audio_path"]) if document.get("audio_path") else None
    runtime = None
    note = ""
    if audio_path and audio_path.exists():
        audio = read_wav_16k(audio_path)
        transcription, runtime = whisper.transcribe(audio)
        buckets = assign_words(transcription.words, bounds)
        # A language "detected" in silence or music is noise: only a video with words has a language.
        language = transcription.language if transcription.words else ""
        language_probability = transcription.language_probability if language else 0.0
    else:
        note = "the video has no audio track: transcripts are empty"
        context.log.warning(f"{document['files'][0]}: {note}")
        buckets, language, language_probability = [[] for _ in bounds], "", 0.0
    elapsed = time.perf_counter() - started

    texts = [join_words(words) for words in buckets]
    atomic_write_json(
        layout.transcripts_file(key),
        {
            "partition_key": key,
            "model": runtime.model if runtime else None,
            "language": language,
            "language_probability": language_probability,
            "note": note,
            "segments": [
                {"index": i, "start": s, "end": e, "text": text, "words": words_as_dicts(words)}
                for i, ((s, e), text, words) in enumerate(zip(bounds, texts, buckets))
            ],
        },
    )
    store.write_document(key)

    word_count = sum(len(words) for words in buckets)
    duration = document["total_duration"]
    metadata: dict[str, object] = {
        "word_count": word_count,
        "language": language or "none",
        "language_probability": language_probability,
        "segments_with_speech": sum(1 for t in texts if t),
        "excerpt": dg.MetadataValue.md(timed_excerpt(bounds, texts, empty="_no speech_")),
        "seconds": round(elapsed, 3),
        "real_time_factor": round(duration / elapsed, 1) if elapsed > 0 and runtime else 0.0,
        "visible_devices": visible_devices(),
    }
    if runtime:
        metadata |= {
            "model": runtime.model,
            "model_path": runtime.path,
            "device": runtime.device,
            "compute_type": runtime.compute_type,
        }
    if note:
        metadata["note"] = note
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(digest(texts)))


def video_page_url(settings: Settings, key: str) -> str:
    workspace, _ = split_partition_key(key)
    return f"{settings.web_url.rstrip('/')}/videos/{quote(key)}?workspace={quote(workspace)}"


def _audio_track_label(info: MediaInfo) -> str:
    if info.audio_track is None:
        return "none"
    language = f" ({info.audio_language})" if info.audio_language else ""
    return f"{info.audio_track + 1} of {info.audio_tracks}{language}"


def _remove_staging_of_dead_runs(context: dg.AssetExecutionContext, staging_root: Path, key: str) -> None:
    """A run killed half-way (SIGKILL, OOM) never cleaned its staging folder: the next run of the video
    does, for every earlier run of it that is no longer in progress."""
    for folder in staging_root.glob(f"{key}.*"):
        run = context.instance.get_run_by_id(folder.name.removeprefix(f"{key}."))
        if run is None or run.is_finished:
            shutil.rmtree(folder, ignore_errors=True)
            context.log.info(f"removed {folder.name}: staging left by a run that ended without cleaning it")


@dataclass(frozen=True)
class _Source:
    uri: str  # in the bucket
    path: Path  # the file to read: the upload itself, or an S3 object's local copy


def _with_recorded_bytes(bucket: UploadBucket, record: VideoRecord) -> tuple[list[str], _Source | None]:
    """The names whose upload still exists, and the first one holding exactly the bytes the partition is
    named after (None if none does).

    A run processes what its partition names, never what a file became after an overwrite or a stalled
    upload's resumed write; hashing costs a fraction of cutting the file. An S3 object is copied (streamed)
    only once it is known to exist; a copy of other bytes is removed at once.
    """
    workspace, _ = split_partition_key(record.partition_key)
    present: list[str] = []
    for source in record.sources:
        if bucket.stat(workspace, source.name) is None:
            continue
        path = bucket.local_path(source.uri)
        if not path.exists():  # removed between the two looks
            continue
        present.append(source.name)
        if content_hash(path) == record.sha256:
            return present, _Source(source.uri, path)
        bucket.release(source.uri)
    return present, None


def _segment_rows(split: SplitResult, layout: DataLayout, final_dir: Path) -> list[dict]:
    """Rows for segments.json, with the paths the files will have once staging is swapped in."""
    return [
        {
            "index": seg.index,
            "name": seg.file_name,
            "start": seg.start,
            "end": seg.end,
            "frame_times": [f.time for f in seg.frames],
            "frame_paths": [layout.relative(final_dir / FRAMES_DIR / f.path.name) for f in seg.frames],
            "path": layout.relative(final_dir / seg.file_name),
        }
        for seg in split.segments
    ]


def _segments_table(rows: list[dict]) -> str:
    lines = ["| # | start | end | frames (s) |", "|---|---|---|---|"]
    lines += [
        f"| {r['index']} | {r['start']:.2f} | {r['end']:.2f} | {', '.join(f'{t:g}' for t in r['frame_times'])} |"
        for r in rows
    ]
    return "\n".join(lines)
