"""Deleting a name of a video, or a video, everywhere it is kept.

A video is referenced by the names it was uploaded under (the registry, beside the data). Deleting
a name drops that reference and removes the upload; the video itself goes only when no name is
left, or when forced: its folder, staging leftovers, vector points (segments and description), its
dynamic partition and its registry rows. It happens under the video's lock, the one `ingest` takes
to create a run, and never while a run of the video is in progress, so no half video is left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.defs.run_health import reap_dead_runs
from video_assets.defs.runner import run_in_progress, video_lock, wait_for_run
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout, check_workspace, split_partition_key
from video_assets.store.registry import VideoRegistry
from video_assets.store.uploads import UploadBucket, open_bucket
from video_assets.store.vector_access import configured_vector_index
from video_assets.store.vector_index import VectorIndex
from video_assets.store.video_files import remove_tree, remove_video_folder, staging_folders


@dataclass
class DeletionReport:
    target: str
    status: str  # "deleted", "kept" (names still hold it), "not_found", "refused" (a run in progress)
    partition_key: str | None = None
    names_dropped: list[str] = field(default_factory=list)
    names_left: list[str] = field(default_factory=list)
    uploads_removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    points_deleted: int = 0
    partition_removed: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("deleted", "kept")

    def as_dict(self) -> dict:
        return asdict(self)


def delete(
    target: str,
    *,
    workspace: str,
    force: bool,
    wait: bool,
    settings: Settings,
    instance: dg.DagsterInstance,
    remove_uploads: bool = True,
) -> DeletionReport:
    """Delete `target` — an uploaded name in `workspace`, or a partition key.

    A name: its reference is dropped and its upload removed; the video follows when no name is left.
    A partition key: the video, if no name holds it (or `force`, which drops every name first).
    `remove_uploads=False` is the bucket telling us a file is gone: there is nothing to remove.
    """
    layout = DataLayout(settings.home_dir)
    bucket = open_bucket(settings.uploads_location, settings.upload_cache_dir)
    registry = VideoRegistry(layout, bucket)
    key, name = _resolve(target, workspace, registry, instance)
    if key is None:
        return DeletionReport(
            target, "not_found", message=f"no video or upload named {target!r} in workspace {workspace!r}"
        )
    while True:
        with video_lock(settings.home_dir, key):
            reap_dead_runs(instance, key)
            active = run_in_progress(instance, key)
            if active is None:
                return _delete_locked(
                    target, key, name, force, remove_uploads, layout, bucket, registry, settings, instance
                )
        if not wait:
            return DeletionReport(
                target,
                "refused",
                key,
                message=f"video {key} has run {active.run_id[:8]} {active.status.value.lower()}: nothing was deleted; "
                "delete again when it ends (or with --wait), or terminate the run in the UI",
            )
        wait_for_run(instance, active)


def _resolve(
    target: str, workspace: str, registry: VideoRegistry, instance: dg.DagsterInstance
) -> tuple[str | None, str | None]:
    try:
        split_partition_key(target)
    except ValueError:
        return registry.owner(check_workspace(workspace), target), target
    known = registry.get(target) is not None or instance.has_dynamic_partition(videos_partitions.name, target)
    return (target if known or DataLayout(registry.layout.home).video_dir(target).exists() else None), None


def _delete_locked(
    target: str,
    key: str,
    name: str | None,
    force: bool,
    remove_uploads: bool,
    layout: DataLayout,
    bucket: UploadBucket,
    registry: VideoRegistry,
    settings: Settings,
    instance: dg.DagsterInstance,
) -> DeletionReport:
    workspace, _ = split_partition_key(key)
    report = DeletionReport(target, "kept", key)
    if name is not None:
        _drop(registry, bucket, workspace, name, remove_uploads, report)
    record = registry.get(key)
    left = record.names if record else []
    if left and not force:
        report.names_left = left
        report.message = f"video {key} is kept: still referenced by {', '.join(left)}"
        return report
    for other in left:
        _drop(registry, bucket, workspace, other, remove_uploads, report)
    remove_video_data(key, layout, registry, settings, instance, report)
    report.status = "deleted"
    report.message = (
        f"deleted video {key}: {report.points_deleted} vector points, {report.bytes_freed} bytes of files"
        + (", its partition" if report.partition_removed else "")
    )
    return report


def _drop(
    registry: VideoRegistry, bucket: UploadBucket, workspace: str, name: str, remove: bool, report: DeletionReport
) -> None:
    registry.drop_name(workspace, name)
    report.names_dropped.append(name)
    if remove and bucket.remove(workspace, name):
        report.uploads_removed.append(name)


def remove_video_data(
    key: str,
    layout: DataLayout,
    registry: VideoRegistry,
    settings: Settings | None,
    instance: dg.DagsterInstance,
    report: DeletionReport,
    index: VectorIndex | None = None,
) -> None:
    """Everything stored for video `key`, in an order that a crash at any point leaves something the
    cleanup recognises and finishes: partition first (no new run can start), then points, files, rows.

    `index`: one already open (the cleanup deletes many videos in one session of the shard)."""
    if instance.has_dynamic_partition(videos_partitions.name, key):
        instance.delete_dynamic_partition(videos_partitions.name, key)
        report.partition_removed = True
    if index is not None:
        report.points_deleted = index.delete_partition(key)
    else:
        with configured_vector_index(settings or Settings.from_env()) as opened:
            report.points_deleted = opened.delete_partition(key)
    report.bytes_freed += remove_video_folder(layout, key)
    for staged_key, _, path in staging_folders(layout):
        if staged_key == key:
            report.bytes_freed += remove_tree(path)
    registry.forget_video(key)


def delete_originals(key: str, settings: Settings) -> list[str]:
    """VIDEO_DELETE_ORIGINAL_ENABLED: after a successful run the uploads go, the references stay."""
    bucket = open_bucket(settings.uploads_location, settings.upload_cache_dir)
    registry = VideoRegistry(DataLayout(settings.home_dir), bucket)
    record = registry.get(key)
    if record is None:
        return []
    workspace, _ = split_partition_key(key)
    registry.mark_original_deleted(key)  # first: the upload sensor must not take the absence for a deletion
    return [name for name in record.names if bucket.remove(workspace, name)]
