"""The upload sensor: new, settled videos in the bucket become partitions and runs.

A tick lists the bucket, skips every file the registry already knows at its current size and mtime,
and probes and hashes at most VIDEO_SENSOR_MAX_FILES_PER_TICK new ones within
VIDEO_SENSOR_TICK_BUDGET_SECONDS; the rest wait for the next tick. The cursor holds only uploads still
being written: what was handled lives in the registry. A tick's costly work (probing, hashing) is
bounded whatever the bucket holds; what grows with it is one directory walk (one paginated listing for an
S3 bucket) and one registry query. An S3 object is copied into <home>/cache/uploads to be probed and hashed;
the copy is kept for the run it is requested for (its segments step removes it) and removed otherwise.
"""

import logging
import time

import dagster as dg

from video_assets.defs.jobs import PROCESS_VIDEO
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VideoStoreResource
from video_assets.defs.run_health import reap_dead_runs
from video_assets.store.registry import Registration, VideoRegistry, admit
from video_assets.store.uploads import Settling, sort_uploads

SOURCE_TAG = "video_assets/source"
# A video registered this long ago whose partition Dagster still lacks was lost with its tick (a tick
# that failed or timed out after registering): it is asked for again. Long enough for the CLI, which
# registers a file and adds its partition itself a moment later.
RECOVER_AFTER_SECONDS = 60.0
_log = logging.getLogger(__name__)


def _report(context: dg.SensorEvaluationContext, level: int, message: str) -> None:
    """To the tick's log in the UI and to Python logging (the daemon's own log, tests)."""
    context.log.log(level, message)
    _log.log(level, message)


class _Partitions:
    """The videos partitions Dagster has, read once per tick and only when needed."""

    def __init__(self, instance: dg.DagsterInstance):
        self._instance = instance
        self._keys: set[str] | None = None

    def __contains__(self, key: str) -> bool:
        if self._keys is None:
            self._keys = set(self._instance.get_dynamic_partitions(videos_partitions.name))
        return key in self._keys


@dg.sensor(
    job_name=PROCESS_VIDEO,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches <bucket>/<workspace>/** and starts one run per new video (by content).",
)
def upload_sensor(context: dg.SensorEvaluationContext, store: VideoStoreResource) -> dg.SensorResult:
    started = time.monotonic()
    for run_id in reap_dead_runs(context.instance):
        _report(context, logging.WARNING, f"run {run_id} lost its process (killed?): marked failed, pool slots freed")
    settings = store.settings()
    bucket = store.bucket()
    registry = store.registry()
    now = time.time()
    uploads = sort_uploads(
        bucket.list(on_error=lambda path, exc: _report(context, logging.WARNING, f"cannot list {path}: {exc}")),
        registry.known_signatures(),
        Settling.parse(context.cursor),
        now=now,
        settle_seconds=settings.settle_seconds,
    )
    partitions = _Partitions(context.instance)
    runs = _recover_lost(context, registry, partitions, registered_before=now - RECOVER_AFTER_SECONDS)

    requested = {r.partition_key for r in runs}
    confirmed: list[str] = []
    looked_at = 0
    for obj in uploads.ready:
        over_time = looked_at and time.monotonic() - started >= settings.sensor_tick_budget  # one file at least
        if looked_at >= settings.sensor_max_files or over_time:
            break
        looked_at += 1
        outcome = admit(registry, bucket, obj)
        if outcome.status != "registered" or outcome.partition_key in partitions or outcome.partition_key in requested:
            bucket.release(obj.uri)  # an S3 object's local copy is kept only for the run it is requested for
        if outcome.status == "changing":
            uploads.settling.add(obj)
            continue
        _report_moved_name(context, registry, outcome)
        if outcome.status != "registered":
            level = logging.ERROR if outcome.status == "failed" else logging.WARNING
            _report(context, level, f"skipping {obj.uri}: {outcome.reason} (looked at again once it changes)")
            continue
        key = outcome.partition_key
        if key in partitions or key in requested:
            _report(context, logging.INFO, f"{obj.name}: same bytes as video {key}, already known; name recorded")
            if key in partitions:
                confirmed.append(key)
            continue
        requested.add(key)
        runs.append(dg.RunRequest(run_key=key, partition_key=key, tags={SOURCE_TAG: obj.name}))
        _report(context, logging.INFO, f"{obj.name}: new video {key}")

    registry.mark_partitioned(confirmed)
    waiting = len(uploads.ready) - looked_at
    summary = (
        f"{looked_at} new uploads looked at, {waiting} waiting for the next tick, "
        f"{len(uploads.settling)} still being written, {uploads.known} known"
    )
    if looked_at or waiting:
        _report(context, logging.INFO, f"{summary} ({time.monotonic() - started:.1f} s)")
    new_keys = [r.partition_key for r in runs]
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=uploads.settling.dump(),
        skip_reason=None if runs else f"no new settled videos: {summary}",
    )


def _recover_lost(
    context: dg.SensorEvaluationContext, registry: VideoRegistry, partitions: _Partitions, *, registered_before: float
) -> list[dg.RunRequest]:
    """Registered videos Dagster never got a partition for are asked for again; the others are confirmed.

    What was handled lives in the registry, written during the tick, while Dagster adds partitions and
    runs only from the tick's result: a tick that dies in between must not lose its videos.
    """
    confirmed, runs = [], []
    for key in registry.unpartitioned(registered_before):
        if key in partitions:
            confirmed.append(key)
            continue
        record = registry.get(key)
        name = record.names[0] if record and record.names else ""
        runs.append(dg.RunRequest(run_key=key, partition_key=key, tags={SOURCE_TAG: name}))
        _report(
            context, logging.WARNING, f"{name}: video {key} was registered but never got its partition: asked again"
        )
    registry.mark_partitioned(confirmed)
    return runs


def _report_moved_name(context: dg.SensorEvaluationContext, registry: VideoRegistry, outcome: Registration) -> None:
    """A name whose bytes changed (overwritten, a stalled upload resumed) leaves the video it held."""
    old = outcome.previous_key
    if old is None:
        return
    obj = outcome.obj
    now = f"now video {outcome.partition_key}" if outcome.partition_key else "now no video"
    left = registry.get(old)
    orphaned = " and has no name left" if left is not None and not left.names else ""
    _report(
        context,
        logging.WARNING,
        f"{obj.workspace}/{obj.name}: its bytes changed ({now}); video {old} lost that name{orphaned}",
    )


# Evaluates the automation conditions of embeddings and description (see search_assets): after a
# model change reruns captions, what reads them follows where their content really changed.
follow_changed_content = dg.AutomationConditionSensorDefinition(
    "follow_changed_content",
    target=dg.AssetSelection.assets("embeddings", "description"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
