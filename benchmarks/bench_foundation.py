"""Speed and memory figures for the foundation, all measured side by side in one run (not a test).

    .venv/bin/python benchmarks/bench_foundation.py [--minutes 10] [--workdir benchmarks/out]
        [--skip-baseline] [--baseline-segments N]

(a) segmentation: this project's split_video vs the old Celery worker's moviepy re-encode vs a bare
    ffmpeg stream-copy floor; (b) Whisper over the whole file vs one call per 30 s clip;
(c) peak RSS of the segments step for a 2-minute and a long input, each in a fresh process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SEGMENT_LENGTH, MIN_SEGMENT_LENGTH, FRAMES_PER_SEGMENT = 30.0, 5.0, 5
SIZE, FPS, KEYFRAME_SECONDS = (1280, 720), 25, 2.0
SENTENCES = [
    (
        "REVIEW",
        "Welcome to the quarterly review. Revenue grew in every region this spring, and the sales team "
        "closed more contracts than in any quarter before.",
    ),
    (
        "VOLCANO",
        "The volcano expedition collected rock samples near the crater rim, then hiked down before the "
        "afternoon clouds rolled in over the valley.",
    ),
    (
        "BICYCLE",
        "Our new bicycle factory opens in the harbour district next month and will employ three hundred "
        "people from the surrounding towns.",
    ),
    (
        "GARDEN",
        "In the community garden, volunteers planted tomatoes, beans and sunflowers along the southern "
        "fence where the soil stays warm.",
    ),
    (
        "ROBOT",
        "The warehouse robot learned to stack boxes by watching human workers, and now it moves twice as "
        "many parcels every night.",
    ),
    (
        "OCEAN",
        "Marine biologists tracked a family of whales across the northern ocean for six weeks using small "
        "satellite tags.",
    ),
    (
        "BAKERY",
        "Every morning the bakery on the corner sells fresh bread, cinnamon rolls and strong coffee to "
        "commuters waiting for the early train.",
    ),
    (
        "ROCKET",
        "Engineers tested the rocket engine for ninety seconds in the desert, and the data showed steady "
        "pressure throughout the burn.",
    ),
    (
        "LIBRARY",
        "The city library extended its opening hours, so students can now study there until midnight "
        "during the exam season.",
    ),
    (
        "TRAIN",
        "A new high speed train connects the two capitals in under three hours, cutting the journey time "
        "nearly in half.",
    ),
    (
        "CHESS",
        "The young chess champion won the final game with a bold knight sacrifice that surprised even the "
        "most experienced commentators.",
    ),
    (
        "FOREST",
        "Rangers counted more than four hundred deer in the protected forest this winter, the highest "
        "number in twenty years.",
    ),
    (
        "MUSEUM",
        "The museum opened a new gallery of ancient maps, showing how sailors imagined the world before "
        "modern navigation.",
    ),
    (
        "SOLAR",
        "Solar panels on the school roof now produce enough electricity to power the classrooms, the gym "
        "and the kitchen.",
    ),
    (
        "COFFEE",
        "Farmers in the mountains harvested a record coffee crop after a season of gentle rain and mild temperatures.",
    ),
    (
        "BRIDGE",
        "Workers finished painting the old iron bridge, which had been closed to traffic for repairs "
        "since the previous autumn.",
    ),
    (
        "WEATHER",
        "Tomorrow will be cloudy in the morning with light rain in the afternoon, and strong winds along the coast.",
    ),
    (
        "GUITAR",
        "The guitar teacher recorded a series of short lessons that help beginners learn their first "
        "chords in a single week.",
    ),
    (
        "HOSPITAL",
        "The hospital installed a faster scanner that reduces waiting times for patients and gives "
        "doctors sharper images.",
    ),
    (
        "PLANET",
        "Astronomers discovered a small rocky planet orbiting a nearby star, and they believe it may "
        "have liquid water.",
    ),
]
COLOURS = ["#1f3a93", "#b22222", "#2e7d32", "#6a1b9a", "#ef6c00", "#00695c", "#37474f", "#ad1457"]


# --- inputs ------------------------------------------------------------------------------------------


def scenes_for(minutes: float) -> list:
    from video_assets.samples import Scene

    count = max(1, round(minutes * 60 / SEGMENT_LENGTH))
    return [
        Scene(
            SEGMENT_LENGTH,
            speech=SENTENCES[i % len(SENTENCES)][1],
            text=SENTENCES[i % len(SENTENCES)][0],
            background=COLOURS[i % len(COLOURS)],
            moving=i % 5 == 2,
        )
        for i in range(count)
    ]


def sample_video(workdir: Path, scenes: list) -> Path:
    """The sample for `scenes`, made once and cached under a name keyed by every parameter."""
    from video_assets.samples import make_video

    key = hashlib.sha256(repr((scenes, SIZE, FPS, KEYFRAME_SECONDS)).encode()).hexdigest()[:12]
    path = workdir / f"sample_{len(scenes) * SEGMENT_LENGTH / 60:g}min_{key}.mp4"
    if not path.exists():
        clock = time.perf_counter()
        partial = path.with_suffix(".partial.mp4")
        make_video(partial, scenes, size=SIZE, fps=FPS, keyframe_seconds=KEYFRAME_SECONDS)
        partial.replace(path)
        print(f"  made {path.name} in {time.perf_counter() - clock:.1f} s")
    return path


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- (a) segmentation --------------------------------------------------------------------------------


def bench_project(video: Path, out: Path) -> dict:
    from video_assets.media.probe import probe
    from video_assets.media.segmenter import split_video

    out, load_before = fresh_dir(out), load()
    clock = time.perf_counter()
    split = split_video(
        probe(video),
        out,
        segment_length=SEGMENT_LENGTH,
        min_segment_length=MIN_SEGMENT_LENGTH,
        frames_per_segment=FRAMES_PER_SEGMENT,
    )
    total_s = time.perf_counter() - clock  # frames are written as JPEG inside split_video
    frames = sum(len(s.frames) for s in split.segments)
    return {
        "total_s": total_s,
        "method": split.method,
        "segments": len(split.segments),
        "frames": frames,
        "audio": split.audio_path,
        "bounds": [(s.start, s.end) for s in split.segments],
        "timings": split.timings,
        "load": load_before,
    }


def bench_baseline(video: Path, out: Path, limit: int | None) -> dict:
    """The old worker: moviepy re-encodes every 30 s segment, then writes its audio as MP3."""
    from moviepy import VideoFileClip

    from video_assets.media.segmenter import plan_segments

    out, load_before = fresh_dir(out), load()
    clock = time.perf_counter()
    with VideoFileClip(str(video)) as clip:
        bounds = plan_segments(clip.duration, SEGMENT_LENGTH, MIN_SEGMENT_LENGTH)
        done = bounds[:limit] if limit else bounds
        for i, (start, end) in enumerate(done):
            sub = clip.subclipped(start, end)
            # temp_audiofile_path only keeps moviepy's temporary audio out of the current directory.
            sub.write_videofile(
                str(out / f"segment_{i:03d}.mp4"),
                codec="libx264",
                audio_codec="aac",
                logger=None,
                temp_audiofile_path=str(out),
            )
            sub.audio.write_audiofile(str(out / f"segment_{i:03d}.mp3"), logger=None)
        duration = clip.duration
    measured = time.perf_counter() - clock
    covered = done[-1][1] - done[0][0]
    return {
        "measured_s": measured,
        "total_s": measured * duration / covered,
        "segments_run": len(done),
        "segments": len(bounds),
        "extrapolated": len(done) < len(bounds),
        "load": load_before,
    }


def bench_floor(video: Path, out: Path, duration: float) -> dict:
    from video_assets.media.ffmpeg import ffmpeg_exe
    from video_assets.media.segmenter import plan_segments

    out, load_before = fresh_dir(out), load()
    times = ",".join(f"{s:.3f}" for s, _ in plan_segments(duration, SEGMENT_LENGTH, MIN_SEGMENT_LENGTH)[1:])
    ffmpeg = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(video)]
    clock = time.perf_counter()
    subprocess.run(
        [
            *ffmpeg,
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_times",
            times,
            "-reset_timestamps",
            "1",
            str(out / "out_%03d.mp4"),
        ],
        check=True,
    )
    subprocess.run([*ffmpeg, "-vn", "-ac", "1", "-ar", "16000", "-f", "wav", str(out / "out.wav")], check=True)
    return {"total_s": time.perf_counter() - clock, "load": load_before}


# --- (b) transcription -------------------------------------------------------------------------------


def bench_whisper(audio_path: Path, bounds: list[tuple[float, float]]) -> dict:
    import numpy as np

    from video_assets.media.audio import SAMPLE_RATE, read_wav_16k
    from video_assets.models.whisper import assign_words, load_whisper, transcribe

    clock = time.perf_counter()
    pipeline, runtime = load_whisper()
    load_s = time.perf_counter() - clock
    audio = read_wav_16k(audio_path)
    seconds = audio.size / SAMPLE_RATE
    transcribe(pipeline, np.zeros(SAMPLE_RATE, dtype=np.float32))  # warm-up: one-off VAD/model set-up

    load_before, clock = load(), time.perf_counter()
    whole = transcribe(pipeline, audio, batch_size=8)
    whole_s = time.perf_counter() - clock
    buckets = assign_words(whole.words, bounds)

    clock = time.perf_counter()
    per_clip = [
        transcribe(pipeline, audio[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)], batch_size=8) for s, e in bounds
    ]
    clips_s = time.perf_counter() - clock
    return {
        "model": f"{runtime.model} ({Path(runtime.path).name}, {runtime.device}/{runtime.compute_type})",
        "load_s": load_s,
        "audio_s": seconds,
        "whole_s": whole_s,
        "clips_s": clips_s,
        "whole_words": len(whole.words),
        "clips_words": sum(len(t.words) for t in per_clip),
        "assigned": sum(len(b) for b in buckets),
        "load": load_before,
    }


# --- (c) peak memory ---------------------------------------------------------------------------------


FFMPEG_WRAPPER = """#!{python}
import resource, subprocess, sys
code = subprocess.call([{ffmpeg!r}, *sys.argv[1:]])
with open({log!r}, "a") as log:
    log.write(f"{{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}\\n")
sys.exit(code)
"""


def peak_rss_kib() -> int:
    """VmHWM: this process's own peak. ru_maxrss is not used for it because Linux carries the parent's
    peak across fork + exec, so a child started from the (Whisper-loaded) parent would report the parent's."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def child_segments(video: Path, out: Path) -> None:
    """Run in a fresh process: probe + split_video (JPEGs included), then report the peaks as JSON."""
    from video_assets.media.probe import probe
    from video_assets.media.segmenter import split_video

    imports_kib = peak_rss_kib()
    split = split_video(
        probe(video),
        fresh_dir(out),
        segment_length=SEGMENT_LENGTH,
        min_segment_length=MIN_SEGMENT_LENGTH,
        frames_per_segment=FRAMES_PER_SEGMENT,
    )
    frames = sum(len(s.frames) for s in split.segments)
    print(
        json.dumps(
            {
                "self_kib": peak_rss_kib(),
                "imports_kib": imports_kib,
                "frames": frames,
                "ru_maxrss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "ru_maxrss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            }
        )
    )


def bench_rss(video: Path, out: Path) -> dict:
    """The segments step in a fresh process; ffmpeg goes through a small wrapper (FFMPEG_BINARY) whose
    RUSAGE_CHILDREN peak is ffmpeg's own, since the wrapper it is forked from is itself small."""
    from video_assets.media.ffmpeg import ffmpeg_exe

    out.mkdir(parents=True, exist_ok=True)
    wrapper, log = out.parent / f"{out.name}_ffmpeg.py", out.parent / f"{out.name}_ffmpeg.log"
    wrapper.write_text(FFMPEG_WRAPPER.format(python=sys.executable, ffmpeg=ffmpeg_exe(), log=str(log)))
    wrapper.chmod(0o755)
    log.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child-segments", str(video), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"FFMPEG_BINARY": str(wrapper)},
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"ffmpeg_kib": max(int(line) for line in log.read_text().split())}


# --- report ------------------------------------------------------------------------------------------


def summary(args: argparse.Namespace, r: dict) -> str:
    mib = lambda kib: f"{kib / 1024:.0f} MiB"  # noqa: E731
    p, f, w, short, long = r["project"], r["floor"], r["whisper"], r["rss_short"], r["rss_long"]
    rows = [
        (
            "Input",
            f"{r['minutes']:g} min {SIZE[0]}x{SIZE[1]} {FPS} fps H.264/AAC, keyframe every "
            f"{KEYFRAME_SECONDS:g} s, speech; {p['segments']} x {SEGMENT_LENGTH:g} s segments",
            "",
        ),
        (
            "Segments, this project: split_video (cut + 16 kHz audio + frames to JPEG)",
            f"{p['total_s']:.1f} s (cut {p['timings']['cut_seconds']:.1f} s, {p['frames']} frames "
            f"{p['timings']['frames_seconds']:.1f} s), method {p['method']}",
            "",
        ),
        ("Segments, floor: bare ffmpeg stream copy + audio decode", f"{f['total_s']:.1f} s", ""),
        ("Project / floor", f"{p['total_s'] / f['total_s']:.1f}x", "close to 1"),
    ]
    if "baseline" in r:
        b = r["baseline"]
        how = (
            f"extrapolated from {b['segments_run']} of {b['segments']} segments ({b['measured_s']:.1f} s measured)"
            if b["extrapolated"]
            else "all segments"
        )
        rows += [
            ("Segments, old worker: moviepy re-encode + MP3 per segment", f"{b['total_s']:.1f} s ({how})", ""),
            ("Baseline / project", f"{b['total_s'] / p['total_s']:.0f}x", ">= 20x"),
        ]
    else:
        rows.append(("Segments, old worker: moviepy baseline", "skipped (--skip-baseline)", ">= 20x"))
    rows += [
        ("Whisper model load (excluded below)", f"{w['load_s']:.1f} s, {w['model']}", ""),
        (
            "Transcription, whole file, one batched call",
            f"{w['whole_s']:.1f} s, RTF {w['audio_s'] / w['whole_s']:.0f}x real time, "
            f"{w['whole_words']} of {r['spoken_words']} spoken words",
            "",
        ),
        (
            f"Transcription, one call per {SEGMENT_LENGTH:g} s clip ({p['segments']} calls)",
            f"{w['clips_s']:.1f} s, RTF {w['audio_s'] / w['clips_s']:.0f}x real time, "
            f"{w['clips_words']} of {r['spoken_words']} spoken words",
            "",
        ),
        ("Per clip / whole file", f"{w['clips_s'] / w['whole_s']:.1f}x", "> 1"),
        (
            f"Peak RSS segments step, {r['short_minutes']:g} min (python / ffmpeg child)",
            f"{mib(short['self_kib'])} / {mib(short['ffmpeg_kib'])} ({mib(short['imports_kib'])} after imports)",
            "",
        ),
        (
            f"Peak RSS segments step, {r['minutes']:g} min (python / ffmpeg child)",
            f"{mib(long['self_kib'])} / {mib(long['ffmpeg_kib'])} ({mib(long['imports_kib'])} after imports)",
            "",
        ),
        (
            f"RSS ratio {r['minutes']:g} min / {r['short_minutes']:g} min (python / ffmpeg)",
            f"{long['self_kib'] / short['self_kib']:.2f} / {long['ffmpeg_kib'] / short['ffmpeg_kib']:.2f}",
            "~1",
        ),
    ]
    lines = [
        f"Command: `{r['command']}`  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}  ",
        f"Load average (1/5/15 min) at start: {r['load']}; before each timing: "
        + ", ".join(f"{k} {r[k]['load']}" for k in ("project", "floor", "baseline", "whisper") if k in r),
        "",
        "| Measure | Figure | Target |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--baseline-segments",
        type=int,
        default=None,
        help="time only the first N segments of the moviepy baseline and extrapolate",
    )
    parser.add_argument("--child-segments", nargs=2, type=Path, metavar=("VIDEO", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_segments:
        child_segments(*args.child_segments)
        return

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    r: dict = {"minutes": args.minutes, "load": load(), "command": " ".join([".venv/bin/python", *sys.argv])}
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}; load average {r['load']}")
    scenes = scenes_for(args.minutes)
    print("inputs:")
    long_video, short_video = sample_video(work, scenes), sample_video(work, scenes[:4])
    r["short_minutes"] = len(scenes[:4]) * SEGMENT_LENGTH / 60
    r["spoken_words"] = sum(len(scene.speech.split()) for scene in scenes)

    print("(a) segmentation")
    r["project"] = p = bench_project(long_video, work / "project")
    print(f"  project: {p['total_s']:.1f} s ({p['method']}, {p['timings']})")
    duration = p["bounds"][-1][1]
    r["floor"] = bench_floor(long_video, work / "floor", duration)
    print(f"  floor:   {r['floor']['total_s']:.1f} s")
    if not args.skip_baseline:
        r["baseline"] = b = bench_baseline(long_video, work / "baseline", args.baseline_segments)
        print(
            f"  moviepy: {b['measured_s']:.1f} s for {b['segments_run']}/{b['segments']} segments"
            + (f" -> extrapolated {b['total_s']:.1f} s" if b["extrapolated"] else "")
        )

    print("(b) transcription")
    r["whisper"] = w = bench_whisper(p["audio"], p["bounds"])
    print(
        f"  load {w['load_s']:.1f} s; whole {w['whole_s']:.1f} s ({w['whole_words']} words); "
        f"per clip {w['clips_s']:.1f} s ({w['clips_words']} words)"
    )

    print("(c) peak RSS of the segments step")
    r["rss_short"] = bench_rss(short_video, work / "rss_short")
    r["rss_long"] = bench_rss(long_video, work / "rss_long")
    print(f"  short {r['rss_short']}\n  long  {r['rss_long']}")

    table = summary(args, r)
    (work / "bench_foundation.md").write_text(table + "\n")
    print("\n" + table)


if __name__ == "__main__":
    main()
