"""Upload sensor ticks over a bucket of 20,000 files, all measured side by side in one run (not a test).

    .venv/bin/python benchmarks/bench_sensor.py [--files 20000] [--new 200] [--workdir DIR]

Builds a bucket of --files files over 20 workspaces, all last written an hour ago: a tenth are tiny
real videos (each made unique by a trailing MP4 `free` box, so each is its own partition), the rest
small files that are no video. Then evaluates the real `upload_sensor` against a fresh Dagster
instance (the repo's dagster.yaml, SQLite, under a temporary DAGSTER_HOME), applying each tick's
partition requests as the daemon would, and prints for each tick its time and cursor size:

  first tick      nothing known yet: lists everything, looks at VIDEO_SENSOR_MAX_FILES_PER_TICK files
  drain           the ticks after it until nothing waits (their count and total time)
  steady tick     nothing new: every file is skipped on its size and mtime, nothing probed or hashed
  new, settling   --new files just written: seen, remembered in the cursor, not yet looked at
  new, changed    the same files backdated by VIDEO_UPLOAD_SETTLE_SECONDS (standing in for the wait): the
                  new mtime is a change since the last sighting, so one more tick
  new, settled    unchanged since: probed, hashed and registered in one tick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

WORKSPACES = 20
VIDEO_SHARE = 10  # one file in ten is a video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=200)
    parser.add_argument("--workdir", type=Path, help="keep the bucket and instance here (default: a temporary folder)")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="bench_sensor.") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, workdir: Path) -> None:
    home = workdir / "data"
    os.environ["VIDEO_ASSETS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(workdir / "dagster_home")
    os.environ.pop("VIDEO_ASSETS_UPLOADS", None)

    import dagster as dg

    from video_assets.defs.partitions import videos_partitions
    from video_assets.defs.resources import VideoStoreResource
    from video_assets.defs.runner import dagster_instance
    from video_assets.defs.sensors import upload_sensor
    from video_assets.samples import Scene, make_video
    from video_assets.settings import Settings

    summaries = quiet_ticks()
    settings = Settings.from_env()
    video = make_video(workdir / "tiny.mp4", [Scene(1.0, moving=True)], size=(64, 48), audio=False).read_bytes()
    started = time.perf_counter()
    hour_ago = time.time() - 3600.0
    for i in range(args.files):
        write(home / "uploads", i, video, stamp=hour_ago)
    print(
        f"bucket: {args.files} files ({args.files // VIDEO_SHARE} videos) in {WORKSPACES} workspaces, "
        f"written in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"settings: max {settings.sensor_max_files} files per tick, budget {settings.sensor_tick_budget:g} s, "
        f"settle {settings.settle_seconds:g} s"
    )

    instance = dagster_instance()
    store = VideoStoreResource(home=str(home))
    cursor: str | None = None

    def tick(label: str) -> dg.SensorResult:
        nonlocal cursor
        began = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the tick's own log (context.log) prints every file
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"store": store})
            result = upload_sensor(context)
        seconds = time.perf_counter() - began
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        cursor = result.cursor
        if label:
            report(label, seconds, result)
        return result

    def report(label: str, seconds: float, result: dg.SensorResult) -> None:
        what = result.skip_reason.skip_message if result.skip_reason else summaries[-1].split(" (")[0]
        runs = len(result.run_requests)
        print(f"{label:<14} {seconds:6.2f} s   cursor {len(cursor or ''):6d} bytes   {runs:4d} runs   {what}")

    tick("first tick")
    drained, ticks, slowest = time.perf_counter(), 0, 0.0
    while True:
        began = time.perf_counter()
        result = tick("")
        slowest = max(slowest, time.perf_counter() - began)
        ticks += 1
        reason = result.skip_reason.skip_message if result.skip_reason else ""
        if result.skip_reason and "0 new uploads looked at, 0 waiting" in reason:
            break
    print(
        f"{'drain':<14} {time.perf_counter() - drained:6.2f} s   {ticks} more ticks until nothing waited "
        f"(the last one had nothing to do), the slowest {slowest:.2f} s; "
        f"{len(instance.get_dynamic_partitions(videos_partitions.name))} partitions"
    )
    tick("steady tick")
    tick("steady tick")

    now = time.time()
    paths = [write(home / "uploads", args.files + i, video, stamp=now) for i in range(args.new)]
    tick("new, settling")
    later = time.time() - settings.settle_seconds - 1.0
    for path in paths:  # stands in for waiting out the settle time
        os.utime(path, (later, later))
    tick("new, changed")  # the backdated mtime is one more change: confirmed unchanged on the next tick
    tick("new, settled")
    tick("steady tick")
    print(
        f"partitions: {len(instance.get_dynamic_partitions(videos_partitions.name))}; "
        f"registry: {(home / 'registry.sqlite').stat().st_size / 1e6:.1f} MB"
    )
    instance.dispose()


def quiet_ticks() -> list[str]:
    """Each tick logs every file it skips (thousands of lines): keep only its summary line."""
    summaries: list[str] = []

    class Summaries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "new uploads looked at" in record.getMessage():
                summaries.append(record.getMessage())

    sensor_log = logging.getLogger("video_assets.defs.sensors")
    sensor_log.setLevel(logging.INFO)
    sensor_log.propagate = False
    sensor_log.addHandler(Summaries())
    return summaries


def write(uploads: Path, i: int, video: bytes, *, stamp: float) -> Path:
    path = uploads / f"ws{i % WORKSPACES:02d}" / f"batch-{i // 1000:03d}" / f"file-{i:06d}"
    if (i // WORKSPACES) % VIDEO_SHARE == 0:  # every tenth file of each workspace
        path = path.with_suffix(".mp4")
        tag = f"{i}".encode()
        data = video + struct.pack(">I4s", 8 + len(tag), b"free") + tag  # a box players skip: other bytes, same video
    else:
        path = path.with_suffix(".txt")
        data = f"notes {i}\n".encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (stamp, stamp))
    return path


if __name__ == "__main__":
    main()
