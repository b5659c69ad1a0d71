"""The orphan cleanup over a generated data root: seconds and peak memory as video folders grow.

    .venv/bin/python benchmarks/bench_cleanup.py [--sizes 250,500,1000] [--points-per-video 30]

Each size runs in a fresh process (so its peak RSS is its own) on a fresh data root and Dagster
instance: N video folders, N x 30 vector points, N partitions, and the four cases mixed — half the
videos normal, a sixth each gone-and-unreferenced (deleted), gone-but-referenced and
present-but-unreferenced (kept, reported). Prints the dry run and the real run side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 384


def build(root: Path, videos: int, per_video: int) -> dict[str, int]:
    import dagster as dg

    from video_assets.defs.instance import dagster_instance
    from video_assets.settings import Settings
    from video_assets.store.layout import DataLayout, partition_key
    from video_assets.store.registry import SourceFile, VideoRegistry
    from video_assets.store.uploads import LocalFolderBucket
    from video_assets.store.vector_access import configured_vector_index
    from video_assets.store.vector_index import SEGMENT, IndexedText

    settings = Settings.from_env()
    layout = DataLayout(settings.home_dir)
    bucket = LocalFolderBucket(settings.uploads_location)
    registry = VideoRegistry(layout, bucket)
    instance: dg.DagsterInstance = dagster_instance()
    rng = np.random.default_rng(7)
    cases = {"normal": 0, "deleted": 0, "gone_referenced": 0, "present_unreferenced": 0}
    keys = []
    with configured_vector_index(settings) as index, registry.batch():
        index.ensure_collection(DIM, "bench-model")
        for n in range(videos):
            sha = f"{n:016x}" + "0" * 48
            key = partition_key("bench", sha)
            keys.append(key)
            folder = layout.video_dir(key)
            (folder / "frames").mkdir(parents=True)
            for name in ("segments.json", "transcripts.json", "captions.json"):
                (folder / name).write_bytes(os.urandom(4096))
            for f in range(per_video):
                (folder / "frames" / f"{f:03d}.jpg").write_bytes(os.urandom(2048))
            dense = rng.normal(size=(per_video, DIM)).astype(np.float32)
            dense /= np.linalg.norm(dense, axis=1, keepdims=True)
            index.replace_partition_points(
                key,
                [
                    IndexedText(i, f"segment {i}", dense[i].tolist(), _Sparse([i + 1], [1.0]), {"workspace": "bench"})
                    for i in range(per_video)
                ],
                kind=SEGMENT,
            )
            name = f"video{n:05d}.mp4"
            upload = Path(bucket.uri("bench", name))
            upload.parent.mkdir(parents=True, exist_ok=True)
            upload.write_bytes(b"x" * 64)
            registry.record(key, sha, SourceFile(str(upload), name, 64, upload.stat().st_mtime))
            case = ("normal", "normal", "normal", "deleted", "gone_referenced", "present_unreferenced")[n % 6]
            cases[case] += 1
            if case in ("deleted", "gone_referenced"):
                upload.unlink()
            if case in ("deleted", "present_unreferenced"):
                registry.drop_name("bench", name)
    instance.add_dynamic_partitions("videos", keys)
    return cases


class _Sparse:
    def __init__(self, indices: list[int], values: list[float]) -> None:
        self.indices, self.values = indices, values


def measure(videos: int, per_video: int) -> dict:
    """In this process: build, then the dry run and the real run, each timed; peak RSS after each."""
    from video_assets.defs.cleanup import run_cleanup
    from video_assets.defs.instance import dagster_instance
    from video_assets.settings import Settings

    cases = build(Path(os.environ["VIDEO_ASSETS_HOME"]), videos, per_video)
    instance = dagster_instance()
    settings = Settings.from_env()
    rss_before = _peak_rss_mib()
    out = {"videos": videos, "points": videos * per_video, "cases": cases, "rss_before_mib": rss_before}
    for dry in (True, False):
        started = time.perf_counter()
        report = run_cleanup(settings, instance, dry_run=dry, log=lambda _m: None)
        out["dry" if dry else "real"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "deleted": len(report.deleted),
            "kept_reported": len(report.kept),
            "points_deleted": report.points_deleted,
            "bytes_freed": report.bytes_freed,
            "peak_rss_mib": _peak_rss_mib(),
        }
    return out


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="250,500,1000")
    parser.add_argument("--points-per-video", type=int, default=30)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.points_per_video)))
        return
    print(f"cleanup benchmark: {args.points_per_video} points per video, fresh process per size (peak RSS is its own)")
    print(f"{'videos':>7} {'points':>7} | {'dry run s':>9} {'real s':>7} | {'deleted':>7} {'kept+why':>8} "
          f"{'points del':>10} {'MiB freed':>9} | {'RSS before':>10} {'peak dry':>8} {'peak real':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        root = Path(tempfile.mkdtemp(prefix="bench_cleanup_"))
        env = {**os.environ, "VIDEO_ASSETS_HOME": str(root / "data"), "DAGSTER_HOME": str(root / "dagster_home")}
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--points-per-video", str(args.points_per_video)],
                env=env, capture_output=True, text=True, cwd=REPO, check=True,
            )
        except subprocess.CalledProcessError as exc:
            print(exc.stderr[-3000:])
            raise
        finally:
            shutil.rmtree(root, ignore_errors=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        dry, real = r["dry"], r["real"]
        print(f"{r['videos']:>7} {r['points']:>7} | {dry['seconds']:>9} {real['seconds']:>7} | {real['deleted']:>7} "
              f"{real['kept_reported']:>8} {real['points_deleted']:>10} {real['bytes_freed'] / 2**20:>9.1f} | "
              f"{r['rss_before_mib']:>10} {dry['peak_rss_mib']:>8} {real['peak_rss_mib']:>9}")


if __name__ == "__main__":
    main()
