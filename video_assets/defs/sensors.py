"""The upload sensor: new, settled videos in the bucket become partitions and runs."""

import logging
import time

import dagster as dg

from video_assets.defs.jobs import PROCESS_VIDEO
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VideoStoreResource
from video_assets.defs.run_health import reap_dead_runs
from video_assets.media.errors import MediaError
from video_assets.store.registry import register_upload
from video_assets.store.uploads import WatchState, settled_uploads

SOURCE_TAG = "video_assets/source"
_log = logging.getLogger(__name__)


def _report(context: dg.SensorEvaluationContext, level: int, message: str) -> None:
    """To the tick's log in the UI and to Python logging (the daemon's own log, tests)."""
    context.log.log(level, message)
    _log.log(level, message)


@dg.sensor(
    job_name=PROCESS_VIDEO,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches <bucket>/<workspace>/** and starts one run per new video (by content).",
)
def upload_sensor(context: dg.SensorEvaluationContext, store: VideoStoreResource) -> dg.SensorResult:
    for run_id in reap_dead_runs(context.instance):
        _report(context, logging.WARNING, f"run {run_id} lost its process (killed?): marked failed, pool slots freed")
    settings = store.settings()
    bucket = store.bucket()
    registry = store.registry()
    state = WatchState.parse(context.cursor)
    ready, state = settled_uploads(list(bucket.list()), state, now=time.time(), settle_seconds=settings.settle_seconds)

    new_keys: list[str] = []
    runs: list[dg.RunRequest] = []
    for obj in ready:
        state.handled[obj.uri] = [obj.size, obj.mtime]
        try:
            record = register_upload(registry, bucket, obj)
        except (MediaError, ValueError) as exc:
            _report(context, logging.WARNING, f"skipping {obj.uri}: {getattr(exc, 'cause', exc)}")
            continue
        except Exception as exc:  # one unreadable file (permissions, I/O) must not stop the others
            _report(context, logging.ERROR, f"skipping {obj.uri}: unexpected {type(exc).__name__}: {exc}")
            continue
        key = record.partition_key
        if key in new_keys or context.instance.has_dynamic_partition(videos_partitions.name, key):
            _report(context, logging.INFO, f"{obj.name}: same bytes as video {key}, already known; name recorded")
            continue
        new_keys.append(key)
        runs.append(dg.RunRequest(run_key=key, partition_key=key, tags={SOURCE_TAG: obj.name}))
        _report(context, logging.INFO, f"{obj.name}: new video {key}")

    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=state.dump(),
        skip_reason=None if runs else "no new settled videos",
    )


# Evaluates the automation conditions of embeddings and description (see search_assets): after a
# model change reruns captions, what reads them follows where their content really changed.
follow_changed_content = dg.AutomationConditionSensorDefinition(
    "follow_changed_content",
    target=dg.AssetSelection.assets("embeddings", "description"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
