"""Running the per-video job through the configured Dagster instance, for the CLI.

Runs go through `execute_job` against `DagsterInstance.get()` (DAGSTER_HOME), so every run, its
logs, materializations and failures show in the Dagster UI exactly like sensor-started runs.
"""

import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.locations import default_dagster_home
from video_assets.media.errors import MediaError
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout
from video_assets.store.registry import SourceFile, VideoRegistry, identify
from video_assets.store.uploads import UploadBucket, open_bucket

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
# Which process runs a CLI-started run: "<host>/<pid>/<process start time>" (a reused pid is another process).
PROCESS_TAG = "video_assets/process"


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


def dagster_instance() -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME (default: see locations.py), set up with the repo's dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default_dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def ingest_files(
    paths: list[Path], *, workspace: str, settings: Settings, instance: dg.DagsterInstance
) -> list[IngestOutcome]:
    """Put each file into the upload bucket, add its partition and materialize its assets."""
    from video_assets.definitions import process_video

    os.environ["VIDEO_ASSETS_HOME"] = str(settings.home_dir)  # the run reconstructs definitions from the environment
    if settings.uploads:
        os.environ["VIDEO_ASSETS_UPLOADS"] = settings.uploads
    bucket = open_bucket(settings.uploads_location)
    registry = VideoRegistry(DataLayout(settings.home_dir))
    reap_dead_runs(instance)
    outcomes = []
    for path in paths:
        outcome = _ingest_one(Path(path), workspace, bucket, registry, instance)
        if outcome.status == "queued":
            outcome = _run(outcome, instance, dg.reconstructable(process_video))
        outcomes.append(outcome)
    return outcomes


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
    if instance.has_dynamic_partition(videos_partitions.name, key) and _materialized(instance, key):
        return IngestOutcome(str(path), "duplicate", key, f"same bytes as {', '.join(record.names)}")
    instance.add_dynamic_partitions(videos_partitions.name, [key])
    return IngestOutcome(str(path), "queued", key)


def _bucket_name(bucket: UploadBucket, workspace: str, name: str, key: str) -> str:
    """Keep the uploaded name unless another file already holds it; then add the content id."""
    target = Path(bucket.location) / workspace / name
    if target.exists():
        from video_assets.store.layout import content_hash, split_partition_key

        if not content_hash(target).startswith(split_partition_key(key)[1]):
            stem, dot, suffix = name.rpartition(".")
            return f"{stem}-{split_partition_key(key)[1][:8]}{dot}{suffix}" if dot else f"{name}-{key[-8:]}"
    return name


def _materialized(instance: dg.DagsterInstance, key: str) -> bool:
    """Every asset of the job is materialized for this video: nothing left to do."""
    from video_assets.definitions import defs

    asset_keys = defs.resolve_job_def("process_video").asset_layer.selected_asset_keys
    return all(key in instance.get_materialized_partitions(asset_key) for asset_key in asset_keys)


def _run(outcome: IngestOutcome, instance: dg.DagsterInstance, job: object) -> IngestOutcome:
    result = dg.execute_job(
        job,
        instance=instance,
        tags={"dagster/partition": outcome.partition_key, PROCESS_TAG: this_process()},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # the UI keeps every event
        raise_on_error=False,
    )
    outcome.run_id = result.run_id
    if result.success:
        outcome.status = "processed"
        return outcome
    outcome.status = "failed"
    messages = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            messages.append(data.user_failure_data.description)
        elif data.error:
            messages.append(f"{event.step_key}: {data.error.message.strip()}")
    outcome.message = "; ".join(messages) or "run failed (see the run's log in the Dagster UI)"
    if outcome.path not in outcome.message:
        outcome.message = f"{outcome.path}: {outcome.message}"
    return outcome


def this_process() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, after the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _gone(process: str) -> bool:
    host, _, rest = process.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: not ours to judge
    return not Path(f"/proc/{pid}").exists() or (started != "?" and _start_time(int(pid)) != started)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs started on this machine whose process is gone (kill -9, OOM): marked failed and their pool
    slots freed, so neither the next run of the video nor any run waiting on the pool waits forever.

    Dagster's run monitoring cannot do this for runs executed in a CLI process: no launcher watches
    that process. The CLI calls this before it runs anything, and so does the upload sensor each tick.
    """
    in_progress = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=in_progress)):
        process = run.tags.get(PROCESS_TAG)
        if process and _gone(process):
            instance.report_run_failed(run, f"the process that ran it ({process}) is gone: killed or out of memory")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            reaped.append(run.run_id)
    return reaped


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
