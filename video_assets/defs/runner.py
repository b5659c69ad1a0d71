"""Running the per-video job through the configured Dagster instance, for the CLI.

Runs are created in the instance under DAGSTER_HOME and executed in this process, so every run, its
logs, materializations and failures show in the Dagster UI exactly like sensor-started runs. One
video has at most one run in progress, whoever started it: a CLI that finds a run of the video
in progress (another CLI's, the sensor's, a UI launch) waits for it and reports its result.

With an instance whose run launcher is Dagster's CeleryRunLauncher (deploy/dagster-celery.yaml), the
run is launched through it instead, to a GPU worker (`video-assets workers`), and waited for here.
"""

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.api import execute_run as dg_execute_run  # runs a run created here, as execute_job does
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from video_assets.defs.instance import daemon_running, dagster_instance
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.run_health import PROCESS_TAG, REAPED_TAG, reap_dead_runs, this_process
from video_assets.media.errors import MediaError
from video_assets.settings import Settings
from video_assets.store.atomic import locked
from video_assets.store.layout import DataLayout
from video_assets.store.registry import SourceFile, VideoRegistry, identify
from video_assets.store.uploads import UploadBucket, open_bucket

__all__ = ["IngestOutcome", "dagster_instance", "ingest_files", "video_states"]
# Runs of one video waiting in the daemon's queue or running: a CLI joins them instead of starting another.
WAITING_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
POLL_SECONDS = 1.0
# Runs one `ingest` launches to Celery workers at once (the others wait for a free thread).
MAX_RUNS_AWAITED = 16
# A Celery run past its time limit that is still going this long after SIGTERM gets SIGKILL.
TERMINATE_GRACE_SECONDS = 3.0


@dataclass
class IngestOutcome:
    path: str
    status: str  # "processed", "duplicate", "failed"
    partition_key: str | None = None
    message: str = ""
    run_id: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def ingest_files(
    paths: list[Path], *, workspace: str, settings: Settings, instance: dg.DagsterInstance
) -> list[IngestOutcome]:
    """Put each file into the upload bucket, add its partition and materialize its assets."""
    from video_assets.definitions import process_video

    os.environ["VIDEO_ASSETS_HOME"] = str(settings.home_dir)  # the run reconstructs definitions from the environment
    if settings.uploads:
        os.environ["VIDEO_ASSETS_UPLOADS"] = settings.uploads
    bucket = open_bucket(settings.uploads_location, settings.upload_cache_dir)
    registry = VideoRegistry(DataLayout(settings.home_dir))
    reap_dead_runs(instance)
    job = dg.reconstructable(process_video)

    def run(outcome: IngestOutcome) -> IngestOutcome:
        if outcome.status == "queued":
            outcome = _run_once(outcome, instance, settings, job)
            if outcome.status == "processed" and settings.delete_original_enabled:
                from video_assets.defs.deletion import delete_originals

                outcome.details["uploads_deleted"] = delete_originals(outcome.partition_key, settings)
        return outcome

    if launches_elsewhere(instance) and len(paths) > 1:
        # The runs execute on the workers: every file's run is launched at once (one thread each
        # waits for its run), so the files spread over every free device.
        staged = [_ingest_one(Path(path), workspace, bucket, registry, instance) for path in paths]
        with ThreadPoolExecutor(max_workers=min(len(staged), MAX_RUNS_AWAITED), thread_name_prefix="run") as pool:
            return list(pool.map(run, staged))
    return [run(_ingest_one(Path(path), workspace, bucket, registry, instance)) for path in paths]


def _ingest_one(
    path: Path, workspace: str, bucket: UploadBucket, registry: VideoRegistry, instance: dg.DagsterInstance
) -> IngestOutcome:
    if not path.is_file():
        return IngestOutcome(str(path), "failed", message=f"{path}: no such file")
    try:
        _, sha, key = identify(path, workspace)  # what is not a video never enters the bucket
        obj = bucket.put(path, workspace, _bucket_name(bucket, workspace, path.name, key))
        record = registry.record(key, sha, SourceFile(obj.uri, obj.name, obj.size, obj.mtime))
    except MediaError as exc:
        return IngestOutcome(str(path), "failed", message=str(exc))
    except (OSError, ValueError) as exc:
        return IngestOutcome(str(path), "failed", message=f"{path}: {exc}")
    if instance.has_dynamic_partition(videos_partitions.name, key) and not _missing_assets(
        instance, key, registry.layout
    ):
        return IngestOutcome(str(path), "duplicate", key, f"same bytes as {', '.join(record.names)}")
    return IngestOutcome(str(path), "queued", key)


def _bucket_name(bucket: UploadBucket, workspace: str, name: str, key: str) -> str:
    """Keep the uploaded name unless another file already holds it; then add the content id."""
    existing = bucket.stat(workspace, name)
    if existing is not None:
        from video_assets.store.layout import content_hash, split_partition_key

        try:  # an S3 object is copied to be hashed, and the copy removed
            same = content_hash(bucket.local_path(existing.uri)).startswith(split_partition_key(key)[1])
        finally:
            bucket.release(existing.uri)
        if not same:
            stem, dot, suffix = name.rpartition(".")
            return f"{stem}-{split_partition_key(key)[1][:8]}{dot}{suffix}" if dot else f"{name}-{key[-8:]}"
    return name


def _run_once(
    outcome: IngestOutcome, instance: dg.DagsterInstance, settings: Settings, job: ReconstructableJob
) -> IngestOutcome:
    """Run the video's missing assets, or wait for the run of it already in progress.

    Deciding and creating happen under a lock per video, so two CLIs never both create a run; runs the
    daemon starts (sensor, UI, backfills) are kept to one per video by the run queue's tag limit on
    `dagster/partition` (dagster.yaml) and seen here as in progress.
    """
    key = outcome.partition_key
    waited: dg.DagsterRun | None = None
    elsewhere = False
    while True:
        with video_lock(settings.home_dir, key):
            reap_dead_runs(instance, key)
            active = run_in_progress(instance, key)
            if active is not None and active.status == dg.DagsterRunStatus.QUEUED and not daemon_running(instance):
                instance.report_run_canceled(
                    active, "no dagster-daemon is running to dequeue it: `video-assets ingest` ran the video instead"
                )
                continue
            if active is None:
                if waited is not None and not _died(waited := instance.get_run_by_id(waited.run_id)):
                    return _report(outcome, instance, waited)  # it finished: its result is this video's
                todo = _missing_assets(instance, key, DataLayout(settings.home_dir))
                if not todo:
                    outcome.status = "processed"
                    return outcome
                _add_partition(instance, key)
                elsewhere = launches_elsewhere(instance)
                # Executed here, the run is this process's; on a Celery worker, the worker's process
                # records itself when the run starts (VideoStoreResource).
                where = {DAGSTER_CELERY_QUEUE_TAG: settings.run_queue} if elsewhere else {PROCESS_TAG: this_process()}
                run = instance.create_run_for_job(
                    job_def=job.get_definition(),
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # the UI keeps all
                    tags={
                        "dagster/partition": key,
                        "dagster/max_runtime": str(int(settings.run_max_runtime)),
                        **where,
                    },
                    asset_selection=todo if todo != _job_assets() else None,
                    job_code_origin=job.get_python_origin(),
                )
        if active is None and elsewhere:
            return _launch_and_wait(outcome, instance, run, settings)
        if active is None:
            expired = threading.Event()
            try:
                with _time_limit(settings.run_max_runtime, expired):
                    dg_execute_run(job, run, instance)
            except KeyboardInterrupt:
                if not expired.is_set():
                    raise
            if expired.is_set() and not instance.get_run_by_id(run.run_id).is_finished:
                # interrupted outside Dagster's own handling: the run must not stay STARTED
                instance.report_run_failed(
                    run, f"stopped: it passed dagster/max_runtime {settings.run_max_runtime:g} s"
                )
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            outcome = _report(outcome, instance, instance.get_run_by_id(run.run_id))
            if expired.is_set() and outcome.status == "failed":
                outcome.message = (
                    f"{outcome.path}: run {run.run_id[:8]} stopped: it passed VIDEO_RUN_MAX_RUNTIME_SECONDS="
                    f"{settings.run_max_runtime:g}"
                )
            return outcome
        print(
            f"video-assets: {outcome.path}: run {active.run_id[:8]} of video {key} is {active.status.value.lower()}; "
            "waiting for it",
            file=sys.stderr,
        )
        waited = wait_for_run(instance, active)


def launches_elsewhere(instance: dg.DagsterInstance) -> bool:
    """The instance sends runs to workers (deploy/dagster-celery.yaml): ingest launches its runs there."""
    from dagster_celery.launcher import CeleryRunLauncher

    return isinstance(instance.run_launcher, CeleryRunLauncher)


def _launch_and_wait(
    outcome: IngestOutcome, instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings
) -> IngestOutcome:
    """Hand the run to the instance's run launcher (a Celery queue: a GPU worker executes it) and wait
    for it. A worker killed mid-run leaves the run STARTED: the reaper fails it (its process tag is the
    worker's). Past `dagster/max_runtime` from its start, the run is terminated through the launcher."""
    try:
        instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # Celery needs no workspace
    except Exception as exc:  # the broker is down or refuses: the instance has failed the run
        outcome.status, outcome.run_id = "failed", run.run_id
        outcome.message = f"{outcome.path}: run {run.run_id[:8]} could not be launched: {exc}"
        return outcome
    print(
        f"video-assets: {outcome.path}: run {run.run_id[:8]} sent to queue {run.tags.get(DAGSTER_CELERY_QUEUE_TAG)}; "
        "waiting for a worker to run it",
        file=sys.stderr,
    )
    expired_at: float | None = None
    while not (current := instance.get_run_by_id(run.run_id)).is_finished:
        time.sleep(POLL_SECONDS)
        reap_dead_runs(instance, outcome.partition_key)
        record = instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record else None
        if expired_at is None and started and time.time() - started > settings.run_max_runtime:
            expired_at = time.monotonic()
            instance.run_launcher.terminate(run.run_id)  # Celery revokes the task: SIGTERM, Dagster's interrupt
        elif expired_at is not None and time.monotonic() - expired_at > TERMINATE_GRACE_SECONDS:
            # The interrupt was lost (one raised in native code or a GC callback is only printed): SIGKILL
            # the worker's run process, which the reaper then reports.
            _revoke(instance, run.run_id, "SIGKILL")
            if (
                time.monotonic() - expired_at > 6 * TERMINATE_GRACE_SECONDS
                and not instance.get_run_by_id(run.run_id).is_finished
            ):
                instance.report_run_failed(
                    current, f"stopped: it passed dagster/max_runtime {settings.run_max_runtime:g} s"
                )
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    expired = expired_at is not None
    outcome = _report(outcome, instance, current)
    if expired and outcome.status == "failed":
        outcome.message = (
            f"{outcome.path}: run {run.run_id[:8]} stopped: it passed VIDEO_RUN_MAX_RUNTIME_SECONDS="
            f"{settings.run_max_runtime:g}"
        )
    return outcome


def _revoke(instance: dg.DagsterInstance, run_id: str, signal_name: str) -> None:
    """What the launcher's `terminate` does, with another signal: through the launcher's own Celery app."""
    from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

    run = instance.get_run_by_id(run_id)
    if run is not None and DAGSTER_CELERY_TASK_ID_TAG in run.tags:
        launcher = instance.run_launcher
        launcher.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).revoke(terminate=True, signal=signal_name)  # type: ignore[attr-defined]


@contextmanager
def video_lock(home: Path, key: str) -> Iterator[None]:
    """Held to decide about a video's runs: create one (ingest) or delete the video (delete, cleanup)."""
    with locked(home / "locks" / f"{key}.lock"):
        yield


@contextmanager
def _time_limit(seconds: float, expired: threading.Event) -> Iterator[None]:
    """The daemon's run monitoring enforces `dagster/max_runtime` on the runs it launched; a run this
    process executes is interrupted here instead (SIGINT), which Dagster turns into a failed run. An
    interrupt can be swallowed (one raised inside a garbage-collection callback is only printed), so it
    is repeated until the run has stopped. The caller catches the KeyboardInterrupt that may still
    arrive while this exits: no interrupt is sent once it has."""
    done, sending = threading.Event(), threading.Lock()

    def interrupt() -> None:
        if done.wait(seconds):
            return
        expired.set()
        while True:
            with sending:
                if done.is_set():
                    return
                os.kill(os.getpid(), signal.SIGINT)
            done.wait(0.5)

    threading.Thread(target=interrupt, daemon=True, name="run-time-limit").start()
    try:
        yield
    finally:
        with sending:
            done.set()


def _add_partition(instance: dg.DagsterInstance, key: str) -> None:
    """The sensor may add the same partition at this very moment: the partition existing is success."""
    if instance.has_dynamic_partition(videos_partitions.name, key):
        return
    try:
        instance.add_dynamic_partitions(videos_partitions.name, [key])
    except Exception:
        if not instance.has_dynamic_partition(videos_partitions.name, key):
            raise


def _job_assets() -> set[dg.AssetKey]:
    from video_assets.definitions import defs

    return set(defs.resolve_job_def("process_video").asset_layer.selected_asset_keys)


def run_in_progress(instance: dg.DagsterInstance, key: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name="process_video", statuses=WAITING_STATUSES, tags={"dagster/partition": key}),
        limit=1,
    )
    return runs[0] if runs else None


def wait_for_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """Until the run ends; a run whose process dies meanwhile is reaped, so this never waits forever."""
    while not (run := instance.get_run_by_id(run.run_id)).is_finished:
        time.sleep(POLL_SECONDS)
        reap_dead_runs(instance, run.tags.get("dagster/partition"))
    return run


def _died(run: dg.DagsterRun) -> bool:
    return run.tags.get(REAPED_TAG) == "true"


def _missing_assets(instance: dg.DagsterInstance, key: str, layout: DataLayout) -> set[dg.AssetKey]:
    """The job's assets not yet materialized for this video, with everything after them: after a
    killed run, the next one resumes where it stopped instead of starting over.

    A video deleted and uploaded again has materializations in Dagster's history (SQLite event logs
    cannot wipe one partition) but no folder: with nothing stored, everything is missing.
    """
    from video_assets.definitions import defs

    job_assets = _job_assets()
    if not layout.video_dir(key).exists():
        return job_assets
    missing = {k for k in job_assets if key not in instance.get_materialized_partitions(k)}
    if not missing:
        return set()
    return dg.AssetSelection.assets(*missing).downstream().resolve(defs.resolve_asset_graph()) & job_assets


def _report(outcome: IngestOutcome, instance: dg.DagsterInstance, run: dg.DagsterRun) -> IngestOutcome:
    outcome.run_id = run.run_id
    if run.status == dg.DagsterRunStatus.SUCCESS:
        outcome.status = "processed"
        return outcome
    outcome.status = "failed"
    messages = _failure_messages(instance, run)
    outcome.message = "; ".join(messages) or f"run {run.run_id[:8]} {run.status.value.lower()} (see its log in the UI)"
    if outcome.path not in outcome.message:
        outcome.message = f"{outcome.path}: {outcome.message}"
    return outcome


def _failure_messages(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    messages = []
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            messages.append(data.user_failure_data.description)
        elif data.error:
            messages.append(f"{event.step_key}: {data.error.message.strip()}")
    if not messages:
        messages = [r.message for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    return [m for m in messages if m]


def execute_here(
    instance: dg.DagsterInstance, job: ReconstructableJob, run_config: dict, tags: dict[str, str] | None = None
) -> dg.DagsterRun:
    """Create a run of `job` in the instance and execute it in this process (no daemon needed): the
    run, its logs and its metadata are in the UI like any other."""
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}, **run_config},  # the UI has all
        tags={**(tags or {}), PROCESS_TAG: this_process()},
        job_code_origin=job.get_python_origin(),
    )
    dg_execute_run(job, run, instance)
    return instance.get_run_by_id(run.run_id)


def step_output_metadata(instance: dg.DagsterInstance, run_id: str, step_key: str) -> dict:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        if record.dagster_event.step_key == step_key:
            return {k: v.value for k, v in record.dagster_event.step_output_data.metadata.items()}
    return {}


def video_states(settings: Settings, instance: dg.DagsterInstance) -> list[dict]:
    """Per video: its names and, per asset, whether it is materialized for that partition."""
    from video_assets.definitions import defs

    registry = VideoRegistry(DataLayout(settings.home_dir))
    asset_keys = sorted(defs.resolve_job_def("process_video").asset_layer.selected_asset_keys)
    materialized = {k: instance.get_materialized_partitions(k) for k in asset_keys}
    known = set(instance.get_dynamic_partitions(videos_partitions.name))
    states = []
    for key in registry.partition_keys():
        record = registry.get(key)
        states.append(
            {
                "partition_key": key,
                "files": record.names if record else [],
                "partition": key in known,
                "assets": {k.to_user_string(): ("done" if key in materialized[k] else "missing") for k in asset_keys},
            }
        )
    return states
