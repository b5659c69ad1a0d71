"""An upload removed from the bucket drops its reference; a video with none left is deleted by a run.

The sensor only drops references (a registry write); the deletion — vector points, files, the
partition — runs as a `delete_videos` run, so it is in the UI, waits for a run of the video in
progress instead of racing it, and cannot push a tick past its timeout.
"""

import logging

import dagster as dg

from video_assets.defs.deletion import delete, delete_originals
from video_assets.defs.jobs import PROCESS_VIDEO
from video_assets.defs.resources import VideoStoreResource
from video_assets.store.layout import split_partition_key

DELETE_JOB = "delete_videos"
_log = logging.getLogger(__name__)


class DeleteVideosConfig(dg.Config):
    partition_keys: list[str]
    force: bool = False


@dg.op(description="Delete each video no name references any more (or every one listed, with `force`).")
def delete_videos_op(context: dg.OpExecutionContext, config: DeleteVideosConfig, store: VideoStoreResource) -> dict:
    settings = store.settings()
    reports = {}
    for key in config.partition_keys:
        workspace, _ = split_partition_key(key)
        report = delete(
            key, workspace=workspace, force=config.force, wait=True, settings=settings, instance=context.instance
        )
        context.log.info(report.message or f"{key}: {report.status}")
        reports[key] = report.as_dict()
    context.add_output_metadata({"videos": dg.MetadataValue.json(reports)})
    return reports


@dg.job(name=DELETE_JOB, description="Delete videos whose every upload is gone (requested by `removed_uploads`).")
def delete_videos_job() -> None:
    delete_videos_op()


@dg.sensor(
    job=delete_videos_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Drops the reference of every upload gone from the bucket; deletes videos left with none.",
)
def removed_uploads(context: dg.SensorEvaluationContext, store: VideoStoreResource) -> dg.SensorResult:
    bucket = store.bucket()
    registry = store.registry()
    listed = {(obj.workspace, obj.name) for obj in bucket.list()}
    affected: set[str] = set()
    for workspace, name, key in registry.missing_names(listed):
        registry.drop_name(workspace, name)
        affected.add(key)
        message = f"{workspace}/{name} is gone from the bucket: its reference to video {key} is dropped"
        context.log.info(message)
        _log.info(message)
    orphaned = sorted(key for key in affected if not (record := registry.get(key)) or not record.names)
    if not orphaned:
        return dg.SensorResult(skip_reason="no video lost its last upload")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"delete:{','.join(orphaned)}:{context.cursor or 0}",
                run_config={"ops": {"delete_videos_op": {"config": {"partition_keys": orphaned}}}},
                tags={"video_assets/deleting": ",".join(orphaned)[:255]},
            )
        ],
        cursor=str(int(context.cursor or 0) + 1),
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="VIDEO_DELETE_ORIGINAL_ENABLED: removes a video's uploads once its run succeeded; its names stay.",
)
def delete_original_uploads(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
    from video_assets.settings import Settings

    settings = Settings.from_env()
    key = context.dagster_run.tags.get("dagster/partition")
    if context.dagster_run.job_name != PROCESS_VIDEO or key is None:
        return dg.SkipReason("not a run of a video")
    if not settings.delete_original_enabled:
        return dg.SkipReason("VIDEO_DELETE_ORIGINAL_ENABLED is off")
    removed = delete_originals(key, settings)
    context.log.info(f"video {key}: uploads deleted after its run: {', '.join(removed) or 'none left'}")
    return None
