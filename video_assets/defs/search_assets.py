"""captions -> embeddings -> description: what makes a video findable by what was said or shown.

Model steps declare a code version from their model settings (so a new caption model marks them
unsynced in the UI) and report a data version from their content. Embeddings and description keep a
fingerprint of their inputs: when a rerun finds the same inputs it reuses what is stored instead of
calling the model again, and reports the same data version, so only videos whose captions really
changed flow further downstream.
"""

import time
from pathlib import Path

import dagster as dg
from PIL import Image

from video_assets.defs.common import digest, fail, timed_excerpt, video_asset, visible_devices
from video_assets.defs.k8s import step_op_tags
from video_assets.defs.resources import (
    CaptionerResource,
    EmbedderResource,
    SummarizerResource,
    VectorStoreResource,
    VideoStoreResource,
)
from video_assets.models.captioners import OCR_VISUAL_STATS
from video_assets.settings import BUNDLED, Settings
from video_assets.store.atomic import atomic_write_json, read_json
from video_assets.store.documents import segment_list
from video_assets.store.vector_index import DESCRIPTION, SEGMENT
from video_assets.timecodes import clock

# Embeddings and description follow their input when its content changed (a new data version), not
# on every upstream run: a caption rerun with identical text leaves them as they are.
FOLLOW_CHANGED_CONTENT = (
    dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed()).since(
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("input content changed")


class RecomputeConfig(dg.Config):
    """`force`: call the model even when the inputs equal those of the last run."""

    force: bool = False


def build_search_assets(
    code_versions: dict[str, str], retry_policy: dg.RetryPolicy, settings: Settings
) -> list[dg.AssetsDefinition]:
    # The UI's kind badges name what really runs with these settings.
    caption_kinds = {"onnx", "ocr"} if settings.caption_model == OCR_VISUAL_STATS else {"pytorch", "transformers"}
    description_kinds = {"openai", "qdrant"} if settings.openai_base_url else {"extractive", "qdrant"}

    @video_asset(
        name="captions",
        op_tags=step_op_tags(settings, "captions"),
        deps=["transcripts"],
        kinds=caption_kinds,
        pool="gpu",
        code_version=code_versions["captions"],
        description="What each segment shows: a VLM caption, or on-screen text (OCR) and measured visual facts.",
    )
    def captions(
        context: dg.AssetExecutionContext, store: VideoStoreResource, captioner: CaptionerResource
    ) -> dg.MaterializeResult:
        return caption_video(context, store, captioner)

    @video_asset(
        name="embeddings",
        op_tags=step_op_tags(settings, "embeddings"),
        deps=[captions],
        kinds={"qdrant", "numpy"} if settings.embedding_model == BUNDLED else {"qdrant", "sentence-transformers"},
        pool="vector_store",
        code_version=code_versions["embeddings"],
        automation_condition=FOLLOW_CHANGED_CONTENT,
        retry_policy=retry_policy,
        description="Segment text (`Caption: … Transcript: …`) as dense + keyword vectors in Qdrant.",
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        config: RecomputeConfig,
        store: VideoStoreResource,
        embedder: EmbedderResource,
        vectors: VectorStoreResource,
    ) -> dg.MaterializeResult:
        return embed_video(context, store, embedder, vectors, force=config.force)

    @video_asset(
        name="description",
        op_tags=step_op_tags(settings, "description"),
        deps=[embeddings],
        kinds=description_kinds,
        pool="vector_store",
        code_version=code_versions["description"],
        automation_condition=FOLLOW_CHANGED_CONTENT,
        retry_policy=retry_policy,
        description="A whole-video summary (OpenAI-compatible model, or extractive offline), also embedded.",
    )
    def description(
        context: dg.AssetExecutionContext,
        config: RecomputeConfig,
        store: VideoStoreResource,
        summarizer: SummarizerResource,
        embedder: EmbedderResource,
        vectors: VectorStoreResource,
    ) -> dg.MaterializeResult:
        return describe_video(context, store, summarizer, embedder, vectors, force=config.force)

    return [captions, embeddings, description]


def caption_video(
    context: dg.AssetExecutionContext, store: VideoStoreResource, captioner_resource: CaptionerResource
) -> dg.MaterializeResult:
    key = context.partition_key
    layout = store.layout()
    segments = segment_list(store.document(key))
    started = time.perf_counter()
    captioner = captioner_resource.load()
    results = []
    try:
        for seg in segments:
            frames = [(t, _open_rgb(layout.resolve(p))) for t, p in zip(seg["frame_times"], seg["frame_paths"])]
            results.append(captioner.caption_segment(frames, seg["transcript"]))
    finally:
        captioner.release()  # GPU memory goes back after the step, not at process exit
    elapsed = time.perf_counter() - started

    texts = [r.text for r in results]
    frame_count = sum(len(r.frames) for r in results)
    reused = sum(1 for r in results for f in r.frames if f.reused_from is not None)
    atomic_write_json(
        layout.captions_file(key),
        {
            "partition_key": key,
            "model": captioner.name,
            "kind": captioner.kind,
            "segments": [
                {"index": seg["index"], "text": r.text, "frames": [vars(f) for f in r.frames], "facts": r.facts}
                for seg, r in zip(segments, results)
            ],
        },
    )
    store.write_document(key)
    return dg.MaterializeResult(
        metadata={
            "model": captioner.name,
            "captions_are": captioner.kind,  # honest label: OCR and visual statistics are not a model caption
            "device": getattr(captioner, "device", "cpu"),
            "visible_devices": visible_devices(),
            "frames": frame_count,
            "frames_reused_as_near_duplicates": reused,
            "seconds": round(elapsed, 3),
            "seconds_per_frame": round(elapsed / frame_count, 4) if frame_count else 0.0,
            "excerpt": dg.MetadataValue.md(
                timed_excerpt([(seg["start"], seg["end"]) for seg in segments], texts, empty="_no captions_")
            ),
        },
        data_version=dg.DataVersion(digest(texts)),
    )


def embed_video(
    context: dg.AssetExecutionContext,
    store: VideoStoreResource,
    embedder_resource: EmbedderResource,
    vectors: VectorStoreResource,
    *,
    force: bool = False,
) -> dg.MaterializeResult:
    from video_assets.indexing import segment_points, segment_texts, video_language

    key = context.partition_key
    layout = store.layout()
    document = store.document(key)
    texts = segment_texts(document)
    language = video_language(layout, key)
    started = time.perf_counter()
    embedder = embedder_resource.load()
    fingerprint = digest([embedder.name, texts, language])
    manifest_path = layout.embeddings_file(key)

    with vectors.open() as index:
        index.ensure_collection(embedder.dimension, embedder.name)
        unchanged = (
            not force
            and _same_inputs(manifest_path, fingerprint)
            and index.count(partition_key=key, kind=SEGMENT) == len(texts)
        )
        if not unchanged:
            points = segment_points(document, key, embedder, language=language)
            index.replace_partition_points(key, points, kind=SEGMENT)
        stored = index.count(partition_key=key, kind=SEGMENT)
        location = "server" if index.is_server else "embedded"
    atomic_write_json(manifest_path, {"fingerprint": fingerprint, "model": embedder.name, "points": stored})
    if unchanged:
        context.log.info(f"{key}: segment texts unchanged since the last run; stored vectors kept")
    return dg.MaterializeResult(
        metadata={
            "model": embedder.name,
            "dimension": embedder.dimension,
            "language": language or "none",
            "points": stored,
            "qdrant": location,
            "reused_unchanged": unchanged,
            "visible_devices": visible_devices(),
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(fingerprint),
    )


def describe_video(
    context: dg.AssetExecutionContext,
    store: VideoStoreResource,
    summarizer: SummarizerResource,
    embedder_resource: EmbedderResource,
    vectors: VectorStoreResource,
    *,
    force: bool = False,
) -> dg.MaterializeResult:
    from video_assets.indexing import description_point, video_language
    from video_assets.models.summarizer import SummarizerError

    key = context.partition_key
    layout = store.layout()
    document = store.document(key)
    segments = segment_list(document)
    # A language model reads the timeline; the offline extractive summary picks from what was said
    # (or, for a silent video, from what was shown).
    if summarizer.endpoint():
        texts = [_timed_text(seg) for seg in segments]
    else:
        texts = [seg["transcript"] for seg in segments if seg["transcript"]] or [seg["caption"] for seg in segments]
    started = time.perf_counter()
    fingerprint = digest([summarizer.endpoint() and summarizer.model_name(), texts])
    stored_path = layout.description_file(key)
    embedder = embedder_resource.load()

    if not force and _same_inputs(stored_path, fingerprint):
        stored = read_json(stored_path)
        summary_text, method, model, endpoint, chunks = (
            stored["text"],
            stored["method"],
            stored["model"],
            stored["endpoint"],
            stored["chunks"],
        )
        reused = True
    else:
        try:
            summary = summarizer.summarize(texts)
        except SummarizerError as exc:  # nothing is stored half: the previous description stays
            raise fail(
                context,
                f"{document['files'][0]}: description failed: {exc}",
                transient=exc.transient,
                endpoint=summarizer.endpoint(),
            ) from exc
        summary_text, method, model, endpoint, chunks = (
            summary.text,
            summary.method,
            summary.model,
            summary.endpoint,
            summary.chunks,
        )
        reused = False

    points = (
        [description_point(document, key, summary_text, embedder, language=video_language(layout, key))]
        if summary_text
        else []
    )
    with vectors.open() as index:
        index.ensure_collection(embedder.dimension, embedder.name)
        index.replace_partition_points(key, points, kind=DESCRIPTION)
    atomic_write_json(
        stored_path,
        {
            "fingerprint": fingerprint,
            "text": summary_text,
            "method": method,
            "model": model,
            "endpoint": endpoint,
            "chunks": chunks,
        },
    )
    store.write_document(key)
    return dg.MaterializeResult(
        metadata={
            "description": dg.MetadataValue.md(summary_text or "_empty_"),
            "method": method,  # "llm" or "extractive" (no endpoint configured)
            "model": model or "none",
            "endpoint": endpoint or "none",
            "chunks": chunks,
            "reused_unchanged": reused,
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(digest(summary_text)),
    )


def _timed_text(seg: dict) -> str:
    return f"[{clock(seg['start'])}-{clock(seg['end'])}] Caption: {seg['caption']} Transcript: {seg['transcript']}"


def _same_inputs(path: Path, fingerprint: str) -> bool:
    return path.exists() and read_json(path).get("fingerprint") == fingerprint


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
