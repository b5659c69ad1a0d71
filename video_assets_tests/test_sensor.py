"""The upload sensor on a real folder with a real Dagster instance."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import dagster as dg

from video_assets.defs import sensors
from video_assets.defs.partitions import videos_partitions
from video_assets.defs.resources import VideoStoreResource
from video_assets.defs.sensors import upload_sensor
from video_assets.samples import Scene
from video_assets.store import layout
from video_assets.store import registry as registry_module
from video_assets.store.layout import DataLayout, content_hash, partition_key
from video_assets.store.registry import VideoRegistry


class Ticker:
    """Evaluates the sensor like the daemon does: cursor carried over, partition requests applied."""

    def __init__(self, instance: dg.DagsterInstance, home: Path):
        self.instance = instance
        self.store = VideoStoreResource(home=str(home))
        self.cursor: str | None = None

    def tick(self, *, lost: bool = False) -> dg.SensorResult:
        """One evaluation; `lost`: the tick died after its work, before the daemon applied its result."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"store": self.store})
        result = upload_sensor(context)
        if lost:
            return result
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result


def upload(source: Path, home: Path, name: str, *, workspace: str = "team-a", age: float = 3600.0) -> Path:
    target = home / "uploads" / workspace / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return backdate(target, age)


def backdate(path: Path, age: float) -> Path:
    """Stands in for waiting: the file was last written `age` seconds ago."""
    stamp = time.time() - age
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def registry(home: Path) -> VideoRegistry:
    return VideoRegistry(DataLayout(home))


def test_new_settled_video_adds_partition_and_one_run(media, data_home: Path, instance: dg.DagsterInstance) -> None:
    video = media.talk(47.0)
    upload(video, data_home, "talks/monday.mp4")
    ticker = Ticker(instance, data_home)
    ticker.cursor = json.dumps({"seen": {}, "handled": {"/gone.mp4": [1, 1.0]}})  # an older version's cursor

    result = ticker.tick()
    key = partition_key("team-a", content_hash(video))
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [(key, key)]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]
    assert VideoRegistry(DataLayout(data_home)).get(key).names == ["talks/monday.mp4"]

    assert ticker.tick().run_requests == []  # never the same file twice
    assert ticker.cursor == '{"settling":{}}'  # what was handled lives in the registry


def test_an_upload_is_ready_only_once_unchanged_for_the_settle_time(media, data_home: Path, instance) -> None:
    data = media.talk(47.0).read_bytes()
    target = data_home / "uploads" / "team-a" / "growing.mp4"
    target.parent.mkdir(parents=True)
    ticker = Ticker(instance, data_home)

    target.write_bytes(data[: len(data) // 3])
    assert ticker.tick().run_requests == []  # first sighting, fresh mtime
    assert "growing.mp4" in ticker.cursor
    with target.open("ab") as handle:
        handle.write(data[len(data) // 3 :])
    assert ticker.tick().run_requests == []  # it grew since the last tick
    assert ticker.tick().run_requests == []  # unchanged across two ticks, but written seconds ago: not yet
    backdate(target, 31.0)  # VIDEO_UPLOAD_SETTLE_SECONDS (30) later; the new mtime is one more change seen
    assert ticker.tick().run_requests == []
    result = ticker.tick()  # old enough, and unchanged since the last sighting: complete
    assert len(result.run_requests) == 1
    assert result.run_requests[0].partition_key == partition_key("team-a", content_hash(target))
    assert ticker.cursor == '{"settling":{}}'


def test_an_upload_that_stalls_for_less_than_the_settle_time_is_one_video(media, data_home: Path, instance) -> None:
    data = media.truncated().read_bytes()  # a complete header: its first half probes as a video
    whole = media.root / "faststart.mp4"
    target = data_home / "uploads" / "team-a" / "stalled.mp4"
    target.parent.mkdir(parents=True)
    ticker = Ticker(instance, data_home)

    target.write_bytes(data)
    backdate(target, 20.0)  # stalled for 20 s
    assert ticker.tick().run_requests == []
    with target.open("ab") as handle:  # resumed
        handle.write(whole.read_bytes()[len(data) :])
    backdate(target, 40.0)
    assert ticker.tick().run_requests == []  # changed since it was seen: wait one more tick
    result = ticker.tick()

    key = partition_key("team-a", content_hash(whole))
    assert [r.partition_key for r in result.run_requests] == [key]
    assert registry(data_home).partition_keys() == [key]  # never a video of the first half


def test_a_stalled_upload_registered_half_way_moves_its_name_to_the_whole_file(
    media, data_home: Path, instance, caplog
) -> None:
    half = media.truncated()
    whole = media.root / "faststart.mp4"
    ticker = Ticker(instance, data_home)
    target = upload(half, data_home, "stalled.mp4")  # stalled for an hour: taken for complete
    half_key = partition_key("team-a", content_hash(half))
    assert [r.partition_key for r in ticker.tick().run_requests] == [half_key]

    with target.open("ab") as handle:  # the upload resumes
        handle.write(whole.read_bytes()[half.stat().st_size :])
    assert ticker.tick().run_requests == []  # being written again
    backdate(target, 60.0)
    assert ticker.tick().run_requests == []
    caplog.clear()
    result = ticker.tick()

    key = partition_key("team-a", content_hash(whole))
    assert [r.partition_key for r in result.run_requests] == [key]
    videos = registry(data_home)
    holding = [k for k in videos.partition_keys() if "stalled.mp4" in videos.get(k).names]
    assert holding == [key] and videos.get(key).sha256 == content_hash(whole)
    assert videos.orphaned_partitions() == [half_key]
    assert f"video {half_key} lost that name and has no name left" in caplog.text


def test_an_overwritten_name_moves_to_the_new_video(media, data_home: Path, instance, caplog) -> None:
    first, second = media.talk(47.0), media.portrait()
    ticker = Ticker(instance, data_home)
    upload(first, data_home, "clip.mp4")
    upload(first, data_home, "clip copy.mp4")
    first_key, second_key = partition_key("team-a", content_hash(first)), partition_key("team-a", content_hash(second))
    assert [r.partition_key for r in ticker.tick().run_requests] == [first_key]

    upload(second, data_home, "clip.mp4", age=1800.0)
    assert [r.partition_key for r in ticker.tick().run_requests] == [second_key]
    videos = registry(data_home)
    assert videos.get(first_key).names == ["clip copy.mp4"] and videos.get(second_key).names == ["clip.mp4"]
    assert f"video {first_key} lost that name" in caplog.text and "no name left" not in caplog.text

    upload(media.write("junk.mp4", b"no video\n"), data_home, "clip copy.mp4", age=1800.0)
    assert ticker.tick().run_requests == []
    assert videos.get(first_key).names == [] and videos.orphaned_partitions() == [first_key]
    assert f"video {first_key} lost that name and has no name left" in caplog.text
    assert sorted(instance.get_dynamic_partitions(videos_partitions.name)) == sorted([first_key, second_key])


def test_same_bytes_under_a_new_name_is_one_video_with_both_names(media, data_home: Path, instance) -> None:
    video = media.talk(47.0)
    ticker = Ticker(instance, data_home)
    upload(video, data_home, "first.mp4")
    assert len(ticker.tick().run_requests) == 1
    upload(video, data_home, "copy of first.mp4")
    assert ticker.tick().run_requests == []

    key = partition_key("team-a", content_hash(video))
    assert sorted(VideoRegistry(DataLayout(data_home)).get(key).names) == ["copy of first.mp4", "first.mp4"]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]

    upload(video, data_home, "first.mp4", workspace="team-b")  # another workspace is another video
    result = ticker.tick()
    assert [r.partition_key for r in result.run_requests] == [partition_key("team-b", content_hash(video))]


def test_non_video_is_skipped_with_a_reason_and_never_crashes(media, data_home: Path, instance, caplog) -> None:
    upload(media.write("notes.mov", b"not a movie at all\n" * 100), data_home, "notes.mov")
    upload(media.write("empty.mp4", b""), data_home, "empty.mp4")
    upload(media.talk(47.0), data_home, "real.mp4")
    ticker = Ticker(instance, data_home)

    result = ticker.tick()
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["video_assets/source"] == "real.mp4"
    assert "notes.mov" in caplog.text and "not a readable media file" in caplog.text
    assert "empty.mp4" in caplog.text and "empty file" in caplog.text
    caplog.clear()
    assert ticker.tick().run_requests == [] and "notes.mov" not in caplog.text  # not probed again
    assert "not a readable media file" in registry(data_home).rejection("team-a", "notes.mov")


def test_an_unexpected_error_on_one_file_skips_it_and_the_tick_goes_on(
    media, data_home: Path, instance, caplog, monkeypatch
) -> None:
    broken = upload(media.talk(47.0), data_home, "broken.mp4", workspace="team-b")
    upload(media.portrait(), data_home, "fine.mp4")
    real_hash = layout.content_hash

    def failing_hash(path: Path, *args: object) -> str:
        if path == broken:
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path, *args)

    monkeypatch.setattr(layout, "content_hash", failing_hash)
    ticker = Ticker(instance, data_home)
    result = ticker.tick()

    assert [r.tags["video_assets/source"] for r in result.run_requests] == ["fine.mp4"]
    assert "broken.mp4" in caplog.text and "unexpected PermissionError" in caplog.text
    caplog.clear()
    assert ticker.tick().run_requests == [] and "broken.mp4" not in caplog.text  # not retried every tick
    monkeypatch.setattr(layout, "content_hash", real_hash)
    backdate(broken, 1800.0)  # changed: looked at again
    assert [r.tags["video_assets/source"] for r in ticker.tick().run_requests] == ["broken.mp4"]


def test_hidden_partial_copies_are_ignored(media, data_home: Path, instance) -> None:
    upload(media.talk(47.0), data_home, ".upload.mp4.part")
    assert Ticker(instance, data_home).tick().run_requests == []


def test_a_name_that_is_not_utf8_is_reported_and_the_tick_goes_on(media, data_home: Path, instance, caplog) -> None:
    kept = upload(media.portrait(), data_home, "kept.mp4")
    odd = os.fsencode(kept.parent) + b"/caf\xe9.mp4"  # Latin-1 bytes from an old uploader
    with open(odd, "wb") as handle:
        handle.write(kept.read_bytes())
    os.utime(odd, (time.time() - 3600.0,) * 2)

    result = Ticker(instance, data_home).tick()

    assert [r.tags["video_assets/source"] for r in result.run_requests] == ["kept.mp4"]
    assert "caf" in caplog.text and "not valid UTF-8" in caplog.text


def test_links_out_of_the_bucket_are_never_followed(media, data_home: Path, instance, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    shutil.copyfile(media.talk(47.0), outside / "deep" / "private.mp4")
    settled = time.time() - 3600.0  # long settled: only the link rule can keep it out
    os.utime(outside / "deep" / "private.mp4", (settled, settled))
    kept = upload(media.portrait(), data_home, "kept.mp4")
    workspace = data_home / "uploads" / "team-a"
    (data_home / "uploads" / "docs").symlink_to(outside)  # a whole "workspace" elsewhere
    (workspace / "linked_folder").symlink_to(outside)
    (workspace / "linked_file.mp4").symlink_to(outside / "deep" / "private.mp4")
    (workspace / "alias.mp4").symlink_to(kept)  # a link inside the bucket is an ordinary upload
    (workspace / "sub").mkdir()
    (workspace / "sub" / "deeper_link.mp4").symlink_to(outside / "deep" / "private.mp4")
    (workspace / "sub" / "loop").symlink_to(workspace)  # a linked folder inside is not walked: no loop, no twins
    (workspace / "sub" / "dangling.mp4").symlink_to(tmp_path / "missing.mp4")

    result = Ticker(instance, data_home).tick()

    key = partition_key("team-a", content_hash(kept))
    assert [r.partition_key for r in result.run_requests] == [key]
    assert VideoRegistry(DataLayout(data_home)).get(key).names == ["alias.mp4", "kept.mp4"]


def test_a_tick_that_died_after_registering_is_asked_for_again(media, data_home: Path, instance, monkeypatch) -> None:
    monkeypatch.setattr(sensors, "RECOVER_AFTER_SECONDS", 0.0)
    upload(media.portrait(), data_home, "a.mp4")
    key = partition_key("team-a", content_hash(media.portrait()))
    ticker = Ticker(instance, data_home)
    assert len(ticker.tick(lost=True).run_requests) == 1  # registered, but Dagster never saw the result

    result = ticker.tick()  # the file is known now: only the registry can tell the video was lost
    assert [r.partition_key for r in result.run_requests] == [key]
    assert instance.get_dynamic_partitions(videos_partitions.name) == [key]
    assert ticker.tick().run_requests == [] and registry(data_home).unpartitioned(time.time()) == []


def test_the_tick_budget_leaves_the_newer_uploads_to_the_next_tick(
    media, data_home: Path, instance, monkeypatch
) -> None:
    monkeypatch.setenv("VIDEO_SENSOR_TICK_BUDGET_SECONDS", "0.000001")  # spent at once: one file per tick
    for name, age in [("newest.mp4", 100.0), ("oldest.mp4", 300.0), ("middle.mp4", 200.0)]:
        upload(media.portrait(), data_home, name, age=age)
    ticker = Ticker(instance, data_home)
    sources = []
    for _ in range(3):
        result = ticker.tick()
        sources += [r.tags["video_assets/source"] for r in result.run_requests]
        sources += [] if result.run_requests else ["-"]
    assert sources == ["oldest.mp4", "-", "-"]  # one video, named three times; oldest first
    assert registry(data_home).get(partition_key("team-a", content_hash(media.portrait()))).names == [
        "oldest.mp4",
        "middle.mp4",
        "newest.mp4",
    ]


def test_a_tick_over_20000_files_is_bounded_small_and_never_rehashes(
    media, data_home: Path, instance, monkeypatch, caplog
) -> None:
    """19,700 files the registry knows, 300 new (50 of them real videos), 30 still being written."""
    tiny = media.video("tiny.mp4", [Scene(1.0, moving=True)], size=(64, 48), audio=False).read_bytes()
    uploads, stamp = data_home / "uploads", time.time() - 3600.0
    videos = registry(data_home)
    with videos.batch():
        for w in range(20):
            folder = uploads / f"ws{w:02d}" / "batch"
            folder.mkdir(parents=True)
            for i in range(1000):
                path = folder / f"f{i:04d}.bin"
                new = i >= 985  # 15 per workspace
                path.write_bytes(tiny if new and i >= 997 else b"%d" % i)  # 3 videos per workspace (1 partition)
                os.utime(path, (stamp + i, stamp + i))
                if not new:
                    videos.record_rejected(
                        f"ws{w:02d}", f"batch/f{i:04d}.bin", len(b"%d" % i), stamp + i, "not a video"
                    )
    for i in range(30):
        (uploads / "ws00" / f"incoming-{i}.mp4").write_bytes(b"partial")
    identified: list[str] = []
    real_identify = registry_module.identify
    monkeypatch.setattr(
        registry_module, "identify", lambda path, ws: identified.append(str(path)) or real_identify(path, ws)
    )
    ticker = Ticker(instance, data_home)
    caplog.set_level(logging.INFO, logger=sensors.__name__)

    timings = []
    for expected_new in (200, 100, 0):
        started = time.perf_counter()
        caplog.clear()
        result = ticker.tick()
        timings.append(time.perf_counter() - started)
        assert len(identified) == expected_new, f"probed and hashed {len(identified)}, not {expected_new}"
        assert len(ticker.cursor) < 4096 and len(json.loads(ticker.cursor)["settling"]["ws00"]) == 30
        identified.clear()
        if expected_new == 200:
            assert "200 new uploads looked at, 100 waiting for the next tick, 30 still being written" in caplog.text
    reason = result.skip_reason.skip_message
    assert "0 waiting for the next tick, 30 still being written, 20000 known" in reason
    assert len(instance.get_dynamic_partitions(videos_partitions.name)) == 20  # one per workspace
    assert len(registry(data_home).known_signatures()) == 20000
    print(f"tick times: {', '.join(f'{t:.2f} s' for t in timings)}")
    assert max(timings) < 20.0, timings  # far inside Dagster's 60 s; about 0.3 s steady on 2 slow cores
