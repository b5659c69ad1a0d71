"""The orphan cleanup: the original worker's four cases over every video folder, and what else is left.

Per video folder — is an upload of it still in the bucket (present), does a name reference it:
present and referenced: kept; present, unreferenced: kept and reported; gone, referenced: kept and
reported; gone and unreferenced: deleted (folder, points, partition, registry rows). Then vector
points and dynamic partitions of videos nothing else knows, registry rows of videos with neither
folder nor name, staging and half-swapped folders of runs that ended. A video with a run in
progress is never touched. `dry_run` reports all of it and changes nothing.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import dagster as dg

from video_assets.defs.deletion import DeletionReport, remove_video_data
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VideoStoreResource
from video_assets.defs.run_health import reap_dead_runs
from video_assets.defs.runner import WAITING_STATUSES, video_lock
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout, split_partition_key
from video_assets.store.registry import VideoRegistry
from video_assets.store.uploads import UploadBucket, open_bucket
from video_assets.store.vector_access import configured_vector_index
from video_assets.store.vector_index import VectorIndex
from video_assets.store.video_files import leftover_folders, remove_tree, staging_folders, tree_bytes, video_folders

CLEANUP_JOB = "cleanup"


@dataclass
class CleanupReport:
    dry_run: bool
    folders_scanned: int = 0
    deleted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # partition key -> why it is kept (reported cases only)
    skipped_in_progress: list[str] = field(default_factory=list)
    partitions_removed: list[str] = field(default_factory=list)
    points_deleted: int = 0
    bytes_freed: int = 0
    leftovers_removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def run_cleanup(
    settings: Settings, instance: dg.DagsterInstance, *, dry_run: bool, log: Callable[[str], None] = print
) -> CleanupReport:
    started = time.perf_counter()
    layout = DataLayout(settings.home_dir)
    bucket = open_bucket(settings.uploads_location, settings.upload_cache_dir)
    registry = VideoRegistry(layout, bucket)
    report = CleanupReport(dry_run)
    reap_dead_runs(instance)
    busy = _partitions_in_progress(instance)
    handled: set[str] = set()
    doomed: list[tuple[str, str]] = []

    for folder in video_folders(layout):
        key = folder.partition_key
        report.folders_scanned += 1
        handled.add(key)
        if key in busy:
            report.skipped_in_progress.append(key)
            continue
        record = registry.get(key)
        names = record.names if record else []
        present = _present(registry, bucket, key, names)
        if names and present:
            continue
        if names:
            report.kept[key] = f"uploads gone, still referenced by {', '.join(names)}"
        elif present:
            report.kept[key] = f"upload {present} still in the bucket, but no name references the video"
        else:
            doomed.append((key, "gone and unreferenced"))

    # One session of the index for every deletion: opening the embedded shard costs more than a delete.
    with configured_vector_index(settings) as index:
        indexed = index.partition_keys()
        partitions = set(instance.get_dynamic_partitions(videos_partitions.name))
        for key in sorted((indexed | partitions | set(registry.partition_keys())) - handled - busy):
            record = registry.get(key)
            if record is not None and record.names:
                continue  # registered, not processed yet: the sensor or a backfill will run it
            doomed.append((key, _why_stray(key, indexed, partitions, record is not None)))
        for key, why in doomed:
            _delete(key, why, layout, registry, instance, index, report, log)

    for staged_key, run_id, path in staging_folders(layout):
        run = instance.get_run_by_id(run_id)
        if staged_key not in busy and (run is None or run.is_finished):
            _remove_leftover(path, layout, report, dry_run, log)
    for path in leftover_folders(layout):
        _remove_leftover(path, layout, report, dry_run, log)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _partitions_in_progress(instance: dg.DagsterInstance, key: str | None = None) -> set[str]:
    tags = {"dagster/partition": key} if key else None
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=WAITING_STATUSES, tags=tags))
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags}


def _present(registry: VideoRegistry, bucket: UploadBucket, key: str, names: list[str]) -> str | None:
    """The first upload of the video still in the bucket: a name it holds, or one it lost whose file
    is there with the size it had."""
    workspace, _ = split_partition_key(key)
    for name in names:
        if bucket.stat(workspace, name) is not None:
            return name
    for name, size in registry.dropped_names(key):
        obj = bucket.stat(workspace, name)
        if obj is not None and obj.size == size:
            return name
    return None


def _why_stray(key: str, indexed: set[str], partitions: set[str], registered: bool) -> str:
    where = [what for what, held in (("vector points", key in indexed), ("a partition", key in partitions)) if held]
    if registered:
        where.append("a registry row")
    return f"no folder and no name: {', '.join(where)} left"


def _delete(
    key: str,
    why: str,
    layout: DataLayout,
    registry: VideoRegistry,
    instance: dg.DagsterInstance,
    index: VectorIndex,
    report: CleanupReport,
    log: Callable[[str], None],
) -> None:
    report.deleted.append(key)
    if report.dry_run:
        report.bytes_freed += tree_bytes(layout.video_dir(key))
        log(f"would delete {key}: {why}")
        return
    removal = DeletionReport(key, "deleted", key)
    with video_lock(layout.home, key):
        if key in _partitions_in_progress(instance, key):
            log(f"kept {key}: a run of it started meanwhile")
            report.deleted.remove(key)
            report.skipped_in_progress.append(key)
            return
        remove_video_data(key, layout, registry, None, instance, removal, index=index)
    report.points_deleted += removal.points_deleted
    report.bytes_freed += removal.bytes_freed
    if removal.partition_removed:
        report.partitions_removed.append(key)
    log(f"deleted {key}: {why} ({removal.points_deleted} points, {removal.bytes_freed} bytes)")


def _remove_leftover(path, layout: DataLayout, report: CleanupReport, dry_run: bool, log) -> None:  # noqa: ANN001
    report.leftovers_removed.append(layout.relative(path))
    report.bytes_freed += tree_bytes(path) if dry_run else remove_tree(path)
    log(f"{'would remove' if dry_run else 'removed'} {layout.relative(path)}: left by a run or removal that ended")


class CleanupConfig(dg.Config):
    dry_run: bool = False


@dg.op(description="The four cases over every video folder; strays and leftovers removed; all of it reported.")
def cleanup_orphans(
    context: dg.OpExecutionContext, config: CleanupConfig, store: VideoStoreResource
) -> dg.Output[dict]:
    report = run_cleanup(store.settings(), context.instance, dry_run=config.dry_run, log=context.log.info)
    for key, why in report.kept.items():
        context.log.warning(f"kept {key}: {why}")
    return dg.Output(
        report.as_dict(),
        metadata={
            "dry_run": report.dry_run,
            "folders_scanned": report.folders_scanned,
            "deleted": len(report.deleted),
            "kept_with_reason": dg.MetadataValue.json(report.kept),
            "skipped_in_progress": len(report.skipped_in_progress),
            "partitions_removed": len(report.partitions_removed),
            "points_deleted": report.points_deleted,
            "bytes_freed": report.bytes_freed,
            "leftovers_removed": len(report.leftovers_removed),
            "seconds": report.seconds,
            "report": dg.MetadataValue.json(report.as_dict()),
        },
    )


@dg.job(name=CLEANUP_JOB, description="The orphan cleanup (`dry_run: true` in the op config only reports).")
def cleanup_job() -> None:
    cleanup_orphans()


def build_cleanup_schedule(settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_cleanup",
        job=cleanup_job,
        cron_schedule=settings.cleanup_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The orphan cleanup, {settings.cleanup_cron} (VIDEO_CLEANUP_CRON).",
    )
