"""`video-assets` end to end, as a person runs it: a real process, a real instance, real media."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

ODD_NAME = "talk — ünïcödé $(echo pwned) 'quoted' ;&.mp4"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "video_assets.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=600,
    )


def test_ingest_good_and_bad_files_end_to_end(media, data_home: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = {
        ODD_NAME: media.talk(47.0),
        "tiny.mp4": media.silent_pattern(0.4),
        "silent.mp4": media.no_audio(),
        "portrait.mp4": media.portrait(),
        "vp9 opus.mkv": media.vp9_mkv(),
    }
    bad = {
        "empty.mp4": (b"", "empty file"),
        "random.mp4": (os.urandom(50_000), "not a readable media file"),
        "notes.mov": (b"Agenda: budget, hiring, roadmap.\n" * 40, "not a readable media file"),
        "truncated.mp4": (media.truncated().read_bytes(), "truncated or damaged"),
    }
    for name, source in good.items():
        shutil.copyfile(source, inbox / name)
    for name, (data, _) in bad.items():
        (inbox / name).write_bytes(data)
    paths = sorted(str(p) for p in inbox.iterdir())

    run = cli("ingest", *paths, "--workspace", "team-a", cwd=tmp_path)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert len(lines) == len(paths)
    for name, (_, cause) in bad.items():
        (line,) = [line for line in lines if name in line]
        assert line.startswith("FAILED") and cause in line, line
    for name in good:
        (line,) = [line for line in lines if name in line]
        assert line.startswith("OK"), line
    assert "4 of 9 file(s) failed" in run.stderr
    assert f"data root {data_home}, Dagster instance {os.environ['DAGSTER_HOME']}" in run.stderr

    # Runs went through the configured instance: the UI shows them, failures with their cause.
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert sum(r.is_success for r in runs) == 5 and sum(r.is_failure for r in runs) == 1
    (failed,) = [r for r in runs if r.is_failure]
    logged = " ".join(e.message or "" for e in instance.all_logs(failed.run_id))
    assert "truncated.mp4" in logged and "truncated or damaged" in logged

    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    assert status["models"]["whisper"]["found"] and status["models"]["whisper"]["device"] == "cpu"
    done = {tuple(v["files"]): v["assets"] for v in status["videos"] if all(s == "done" for s in v["assets"].values())}
    assert {names[0] for names in done} == set(good)

    # Stored results survive: the same bytes again are a duplicate, processed once.
    document = next((data_home / "segments" / "team-a").glob("*/segments_metadata.json"))
    before = document.read_bytes()
    again = cli("ingest", str(inbox / ODD_NAME), str(inbox / "random.mp4"), "--workspace", "team-a", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stdout.splitlines()[0].startswith("DUPLICATE") and ODD_NAME in again.stdout
    assert len(dg.DagsterInstance.get().get_runs()) == len(runs)
    assert document.read_bytes() == before


def test_demo_prints_segments_and_transcript_lines(data_home: Path, tmp_path: Path) -> None:
    run = cli("demo", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 segments, 72.0 s" in run.stdout
    assert "[00:00-00:30] segment_timestamp-0-0.00-30.00.mp4" in run.stdout
    assert "volcano" in run.stdout.lower() and "bicycle" in run.stdout.lower()


def test_default_locations_do_not_depend_on_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    from video_assets.locations import PROJECT, default_dagster_home
    from video_assets.settings import Settings

    monkeypatch.chdir(tmp_path)  # a command run from anywhere else
    # From this checkout: the project's own folders, the ones `make demo` and `make ui` use.
    assert Settings.from_env(environ={}).home_dir == PROJECT / "data"
    assert default_dagster_home() == PROJECT / "dagster_home"
    assert not (tmp_path / "data").exists() and not (tmp_path / "dagster_home").exists()


def test_a_killed_ingest_frees_its_pool_and_the_next_ingest_finishes(media, data_home: Path, tmp_path: Path) -> None:
    """`kill -9` while the run holds the `gpu` pool: the next ingest marks it failed, frees the slot, redoes it."""
    import signal
    import time

    from video_assets.defs.instance import dagster_instance

    video = media.talk(62.0)
    first = subprocess.Popen(
        [sys.executable, "-m", "video_assets.cli", "ingest", str(video)],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    instance = dagster_instance()
    try:
        deadline = time.monotonic() + 120
        while not instance.event_log_storage.get_concurrency_info("gpu").active_run_ids:
            assert first.poll() is None and time.monotonic() < deadline, "the run never took the gpu pool"
            time.sleep(0.05)
        (killed,) = instance.event_log_storage.get_concurrency_info("gpu").active_run_ids
        os.killpg(first.pid, signal.SIGKILL)  # the CLI and everything it started
        first.wait(timeout=30)
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.STARTED  # nobody knows yet

        started = time.monotonic()
        again = cli("ingest", str(video), cwd=tmp_path)
        assert again.returncode == 0 and again.stdout.startswith("OK"), again.stdout + again.stderr
        assert time.monotonic() - started < 90  # not stuck behind the dead run's pool slot

        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("gpu").active_run_ids
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        instance.dispose()
