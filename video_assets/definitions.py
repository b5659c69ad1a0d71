"""The one Definitions object Dagster loads (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from video_assets.defs.assets import segments, transcripts
from video_assets.defs.jobs import process_video_job
from video_assets.defs.resources import VideoStoreResource, WhisperResource
from video_assets.defs.sensors import upload_sensor

defs = dg.Definitions(
    assets=[segments, transcripts],
    jobs=[process_video_job],
    sensors=[upload_sensor],
    resources={"store": VideoStoreResource(), "whisper": WhisperResource()},
    # Steps of one video run in sequence in one process, so each model loads once per run;
    # scale-out comes from the run launcher (and dagster-celery / dagster-k8s executors).
    executor=dg.in_process_executor,
)


def process_video() -> dg.JobDefinition:
    """Reconstructable handle used by the CLI to run the job through the Dagster instance."""
    return defs.resolve_job_def("process_video")
