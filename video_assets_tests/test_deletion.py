"""Deleting names and videos, and the scheduled orphan cleanup, on real media and a real instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from video_assets.defs.partitions import videos_partitions
from video_assets.settings import Settings
from video_assets.store.layout import DataLayout, content_hash, partition_key
from video_assets.store.registry import VideoRegistry
from video_assets.store.vector_access import configured_vector_index
from video_assets_tests.test_cli import cli


def ingest(tmp_path: Path, *files: Path, env: dict[str, str] | None = None) -> list[dict]:
    run = subprocess.run(
        [sys.executable, "-m", "video_assets.cli", "ingest", *map(str, files), "-w", "team-a", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env or os.environ.copy(),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines()]


def points(key: str) -> int:
    with configured_vector_index(Settings.from_env()) as index:
        return index.count(partition_key=key)


def copy_as(source: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / name)
    return folder / name


def test_delete_a_name_keeps_a_video_another_name_holds_then_the_last_name_deletes_it(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    video = media.silent_pattern(4.0)
    key = partition_key("team-a", content_hash(video))
    inbox = tmp_path / "inbox"
    ingest(tmp_path, copy_as(video, inbox, "monday.mp4"), copy_as(video, inbox, "tuesday.mp4"))
    layout = DataLayout(data_home)
    before = points(key)
    assert before >= 2 and layout.video_dir(key).is_dir()

    kept = cli("delete", "monday.mp4", "-w", "team-a", "--json", cwd=tmp_path)
    report = json.loads(kept.stdout)
    assert kept.returncode == 0 and report["status"] == "kept", kept.stderr
    assert report["names_left"] == ["tuesday.mp4"] and report["uploads_removed"] == ["monday.mp4"]
    assert points(key) == before and layout.video_dir(key).is_dir()
    assert not (data_home / "uploads" / "team-a" / "monday.mp4").exists()

    gone = cli("delete", "tuesday.mp4", "-w", "team-a", "--json", cwd=tmp_path)
    report = json.loads(gone.stdout)
    assert gone.returncode == 0 and report["status"] == "deleted", gone.stderr
    assert report["points_deleted"] == before and report["partition_removed"] and report["bytes_freed"] > 0
    assert points(key) == 0 and not layout.video_dir(key).exists()
    assert not instance.has_dynamic_partition(videos_partitions.name, key)
    assert VideoRegistry(layout).get(key) is None
    assert cli("search", "anything", "-w", "team-a", "--min-score", "0", cwd=tmp_path).stdout.startswith("nothing")

    # The same bytes uploaded again are a new video to process, not a duplicate of the deleted one.
    (again,) = ingest(tmp_path, copy_as(video, inbox, "wednesday.mp4"))
    assert again["status"] == "processed" and points(key) == before

    missing = cli("delete", "no-such.mp4", "-w", "team-a", cwd=tmp_path)
    assert missing.returncode == 2 and "no video or upload named 'no-such.mp4'" in missing.stdout


def test_force_deletes_a_video_every_name_holds(media, data_home: Path, instance, tmp_path: Path) -> None:
    video = media.silent_pattern(4.0)
    key = partition_key("team-a", content_hash(video))
    inbox = tmp_path / "inbox"
    ingest(tmp_path, copy_as(video, inbox, "a.mp4"), copy_as(video, inbox, "b.mp4"))
    refused = json.loads(cli("delete", key, "--json", cwd=tmp_path).stdout)
    assert refused["status"] == "kept" and sorted(refused["names_left"]) == ["a.mp4", "b.mp4"]
    forced = json.loads(cli("delete", key, "--force", "--json", cwd=tmp_path).stdout)
    assert forced["status"] == "deleted" and sorted(forced["uploads_removed"]) == ["a.mp4", "b.mp4"]
    assert points(key) == 0 and not list((data_home / "uploads" / "team-a").iterdir())


def test_delete_during_a_run_refuses_or_waits_and_never_leaves_half_a_video(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    video = media.talk(47.0)
    key = partition_key("team-a", content_hash(video))
    runner = subprocess.Popen(
        [sys.executable, "-m", "video_assets.cli", "ingest", str(video), "-w", "team-a"],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert time.monotonic() < deadline and runner.poll() is None, "the run never started"
            time.sleep(0.1)

        refused = cli("delete", key, "--force", "--json", cwd=tmp_path)
        report = json.loads(refused.stdout)
        assert refused.returncode == 1 and report["status"] == "refused", refused.stderr
        assert "nothing was deleted" in report["message"]

        waited = cli("delete", key, "--force", "--wait", "--json", cwd=tmp_path)
        report = json.loads(waited.stdout)
        assert report["status"] == "deleted", waited.stderr
        assert runner.wait(timeout=120) == 0  # the run was not disturbed: it finished first
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert points(key) == 0 and not DataLayout(data_home).video_dir(key).exists()
    assert not instance.has_dynamic_partition(videos_partitions.name, key)


def test_an_upload_removed_from_the_bucket_deletes_its_video_through_a_run(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    from video_assets.definitions import defs
    from video_assets.defs.removed_uploads import removed_uploads
    from video_assets.defs.resources import VideoStoreResource

    video, other = media.silent_pattern(4.0), media.silent_pattern(5.0)
    key, other_key = (partition_key("team-a", content_hash(v)) for v in (video, other))
    ingest(tmp_path, video, other)
    store = VideoStoreResource(home=str(data_home))

    def tick() -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, resources={"store": store})
        return removed_uploads(context)

    assert not tick().run_requests  # nothing gone yet
    (data_home / "uploads" / "team-a" / video.name).unlink()
    (request,) = tick().run_requests
    assert VideoRegistry(DataLayout(data_home)).get(key).names == []  # the reference is dropped in the tick
    assert points(key) > 0  # the deletion itself is a run

    job = defs.resolve_job_def(request.job_name or "delete_videos")
    assert job.execute_in_process(instance=instance, run_config=request.run_config).success
    assert points(key) == 0 and not DataLayout(data_home).video_dir(key).exists()
    assert points(other_key) > 0 and DataLayout(data_home).video_dir(other_key).exists()
    assert not tick().run_requests


def test_delete_original_after_its_run_keeps_the_reference(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from video_assets.defs.removed_uploads import removed_uploads
    from video_assets.defs.resources import VideoStoreResource

    video = media.silent_pattern(4.0)
    key = partition_key("team-a", content_hash(video))
    (outcome,) = ingest(tmp_path, video, env={**os.environ, "VIDEO_DELETE_ORIGINAL_ENABLED": "true"})
    assert outcome["details"]["uploads_deleted"] == [video.name]
    assert not (data_home / "uploads" / "team-a" / video.name).exists()
    assert VideoRegistry(DataLayout(data_home)).get(key).names == [video.name]
    context = dg.build_sensor_context(instance=instance, resources={"store": VideoStoreResource(home=str(data_home))})
    assert not removed_uploads(context).run_requests  # an original deleted on purpose is no deletion
    assert points(key) > 0


def cleanup(tmp_path: Path, *args: str) -> dict:
    run = cli("cleanup", "--json", *args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def stored(data_home: Path, instance: dg.DagsterInstance) -> dict:
    folders = sorted(p.relative_to(data_home).as_posix() for p in (data_home / "segments").glob("*/*"))
    staging = sorted(p.name for p in (data_home / "staging").glob("*")) if (data_home / "staging").exists() else []
    with configured_vector_index(Settings.from_env()) as index:
        keys = sorted(index.partition_keys())
    return {
        "folders": folders,
        "staging": staging,
        "points": keys,
        "partitions": sorted(instance.get_dynamic_partitions(videos_partitions.name)),
    }


def test_cleanup_applies_the_four_cases_and_removes_strays_and_a_dry_run_changes_nothing(
    media, data_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    videos = {
        case: media.silent_pattern(seconds)
        for case, seconds in (("keep", 3.0), ("unref", 3.5), ("gone", 4.0), ("delete", 4.5))
    }
    keys = {case: partition_key("team-a", content_hash(v)) for case, v in videos.items()}
    ingest(tmp_path, *videos.values())
    registry = VideoRegistry(DataLayout(data_home))
    uploads = data_home / "uploads" / "team-a"
    registry.drop_name("team-a", videos["unref"].name)  # present, unreferenced
    (uploads / videos["gone"].name).unlink()  # gone, still referenced
    registry.drop_name("team-a", videos["delete"].name)  # gone and unreferenced
    (uploads / videos["delete"].name).unlink()
    instance.add_dynamic_partitions(videos_partitions.name, ["team-a--0123456789abcdef"])  # added by hand in the UI
    (data_home / "staging" / f"{keys['keep']}.no-such-run").mkdir(parents=True)  # a dead run's staging
    before = stored(data_home, instance)

    dry = cleanup(tmp_path, "--dry-run")
    assert stored(data_home, instance) == before
    assert sorted(dry["deleted"]) == sorted([keys["delete"], "team-a--0123456789abcdef"])

    report = cleanup(tmp_path)
    assert sorted(report["deleted"]) == sorted(dry["deleted"]) and report["folders_scanned"] == 4
    assert set(report["kept"]) == {keys["unref"], keys["gone"]}
    assert "no name references" in report["kept"][keys["unref"]]
    assert "still referenced by" in report["kept"][keys["gone"]]
    assert report["points_deleted"] > 0 and report["bytes_freed"] > 0
    assert report["leftovers_removed"] == [f"staging/{keys['keep']}.no-such-run"]
    after = stored(data_home, instance)
    assert after["folders"] == sorted(f"segments/team-a/{keys[c].split('--')[1]}" for c in ("keep", "unref", "gone"))
    assert after["points"] == sorted(keys[c] for c in ("keep", "unref", "gone"))
    assert after["partitions"] == sorted(keys[c] for c in ("keep", "unref", "gone"))
    assert after["staging"] == []
    run = instance.get_run_by_id(report["run_id"])
    assert run.job_name == "cleanup" and run.status == dg.DagsterRunStatus.SUCCESS  # in the UI like any run
    assert cleanup(tmp_path)["deleted"] == []  # nothing left to do
