"""The one Definitions object Dagster loads (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from video_assets.defs.assets import build_segments, build_transcripts
from video_assets.defs.checks import video_checks
from video_assets.defs.cleanup import build_cleanup_schedule, cleanup_job
from video_assets.defs.code_versions import model_code_versions
from video_assets.defs.common import transient_retries
from video_assets.defs.jobs import build_process_video_job
from video_assets.defs.k8s import executor_for, step_op_tags
from video_assets.defs.removed_uploads import delete_original_uploads, delete_videos_job, removed_uploads
from video_assets.defs.resources import (
    CaptionerResource,
    EmbedderResource,
    SummarizerResource,
    VectorStoreResource,
    VideoStoreResource,
    WhisperResource,
)
from video_assets.defs.search_assets import build_search_assets
from video_assets.defs.sensors import follow_changed_content, upload_sensor
from video_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    versions = model_code_versions(settings)
    retries = transient_retries(settings)
    return dg.Definitions(
        assets=[
            build_segments(retries, step_op_tags(settings, "segments")),
            build_transcripts(versions["transcripts"], step_op_tags(settings, "transcripts")),
            *build_search_assets(versions, retries, settings),
        ],
        asset_checks=video_checks,
        jobs=[build_process_video_job(settings), cleanup_job, delete_videos_job],
        schedules=[build_cleanup_schedule(settings)],
        sensors=[upload_sensor, removed_uploads, delete_original_uploads, follow_changed_content],
        resources={
            "store": VideoStoreResource(),
            "whisper": WhisperResource(),
            "captioner": CaptionerResource(),
            "embedder": EmbedderResource(),
            "vectors": VectorStoreResource(),
            "summarizer": SummarizerResource(),
        },
        # Steps of one video run in sequence in one process, so each model loads once per run;
        # scale-out comes from the run launcher. VIDEO_ASSETS_EXECUTOR=k8s: one Kubernetes Job per
        # step, GPU steps tagged with their GPU request (defs/k8s.py, deploy/).
        executor=executor_for(settings),
    )


defs = build_definitions(Settings.from_env())


def process_video() -> dg.JobDefinition:
    """Reconstructable handle used by the CLI to run the job through the Dagster instance."""
    return defs.resolve_job_def("process_video")


def cleanup() -> dg.JobDefinition:
    """Reconstructable handle of the orphan cleanup, for `video-assets cleanup`."""
    return defs.resolve_job_def("cleanup")
