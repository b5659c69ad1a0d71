"""One run per video, whatever starts it, and what happens to a run whose process is killed.

Real `video-assets` processes against a real instance: racing ingests, `kill -9` half-way, a run
queued for a daemon that is not there, concurrent first use of a fresh DAGSTER_HOME.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from video_assets.defs.run_health import PROCESS_TAG, REAPED_TAG
from video_assets.settings import Settings
from video_assets.store.layout import content_hash, partition_key
from video_assets.store.vector_access import configured_vector_index

# Fields that say when or how fast something ran, not what was stored.
VOLATILE = {"seconds", "timings", "total_seconds", "updated", "registered", "elapsed_seconds", "created"}


def start_ingest(video: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "video_assets.cli", "ingest", str(video), "-w", "team-a", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,  # its own process group, as a shell job: killed with everything it started
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, list[dict], str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def roots(tmp_path: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "VIDEO_ASSETS_HOME": str(tmp_path / name / "data"),
        "DAGSTER_HOME": str(tmp_path / name / "dagster_home"),
    }


def open_instance(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    from video_assets.defs.instance import dagster_instance

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    return dagster_instance()


def video_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return instance.get_runs(filters=dg.RunsFilter(job_name="process_video"))


def stored_state(env: dict[str, str], key: str) -> dict[str, object]:
    """What a video left under the data root and in the index, minus timings."""
    home = Path(env["VIDEO_ASSETS_HOME"])
    files: dict[str, object] = {}
    for path in sorted((home / "segments").rglob("*")):
        if path.is_file():
            name = path.relative_to(home).as_posix()
            # Two data roots are compared: where each lives is not part of what was stored.
            text = path.read_text().replace(str(home.parent), "<root>") if path.suffix == ".json" else ""
            files[name] = _without_volatile(json.loads(text)) if text else path.stat().st_size
    staging = home / "staging"
    settings = Settings.from_env(env)
    with configured_vector_index(settings) as index:
        points = sorted(
            json.dumps(_without_volatile(point.payload), sort_keys=True)
            for point in index.scroll_all(with_vectors=False)
            if point.payload["partition_key"] == key
        )
    return {
        "files": files,
        "points": points,
        "staging": sorted(p.name for p in staging.iterdir()) if staging.exists() else [],
    }


def _without_volatile(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def test_racing_ingests_of_one_video_make_one_run(media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = media.talk(47.0)
    env = roots(tmp_path, "race")  # a fresh DAGSTER_HOME too: first use of the instance races as well
    racers = [start_ingest(video, env, tmp_path) for _ in range(3)]
    results = [finish(p) for p in racers]

    for code, outcomes, err in results:
        assert code == 0, err
        assert [o["status"] for o in outcomes] == ["processed"], err
    instance = open_instance(env, monkeypatch)
    (run,) = video_runs(instance)  # one run, the others waited for it and report it
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert {outcomes[0]["run_id"] for _, outcomes, _ in results} == {run.run_id}
    assert sum("waiting for it" in err for _, _, err in results) >= 1
    key = partition_key("team-a", content_hash(video))
    state = stored_state(env, key)
    assert len(state["points"]) == 3 and state["staging"] == []  # two segments and the description, once


def test_sigkill_mid_run_is_detected_and_the_next_ingest_resumes_to_a_clean_runs_state(
    media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = media.talk(47.0)
    key = partition_key("team-a", content_hash(video))
    env = roots(tmp_path, "killed")
    victim = start_ingest(video, env, tmp_path)
    instance = open_instance(env, monkeypatch)
    killed_run = _wait_for_step(instance, "captions", victim)
    os.killpg(victim.pid, signal.SIGKILL)  # the shell's kill -9 of the job: the CLI and any ffmpeg
    victim.wait(timeout=30)
    assert instance.get_run_by_id(killed_run.run_id).status == dg.DagsterRunStatus.STARTED  # nobody told Dagster

    started = time.monotonic()
    code, (outcome,), err = finish(start_ingest(video, env, tmp_path))  # would wait forever on the gpu pool
    assert code == 0 and outcome["status"] == "processed", err
    resumed_seconds = time.monotonic() - started

    dead = instance.get_run_by_id(killed_run.run_id)
    assert dead.status == dg.DagsterRunStatus.FAILURE and dead.tags[REAPED_TAG] == "true"
    resumed = instance.get_run_by_id(outcome["run_id"])
    assert {k.to_user_string() for k in resumed.asset_selection} == {"captions", "embeddings", "description"}
    assert PROCESS_TAG in resumed.tags and resumed.tags["dagster/max_runtime"]
    for pool in ("gpu", "media", "vector_store"):
        assert killed_run.run_id not in instance.event_log_storage.get_concurrency_info(pool).active_run_ids

    clean = roots(tmp_path, "clean")
    code, _, err = finish(start_ingest(video, clean, tmp_path))
    assert code == 0, err
    resumed_state, clean_state = stored_state(env, key), stored_state(clean, key)
    for name in sorted(set(resumed_state["files"]) | set(clean_state["files"])):
        assert resumed_state["files"].get(name) == clean_state["files"].get(name), name
    assert resumed_state == clean_state
    print(f"kill -9 to resumed and finished: {resumed_seconds:.1f} s")


def _wait_for_step(instance: dg.DagsterInstance, step: str, process: subprocess.Popen[str]) -> dg.DagsterRun:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        for run in video_runs(instance):
            starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if any(record.dagster_event.step_key == step for record in starts):
                return run
        time.sleep(0.1)
    raise AssertionError(f"step {step} never started")


def test_a_run_queued_for_a_daemon_that_is_not_running_is_taken_over(
    media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from video_assets.definitions import process_video

    video = media.silent_pattern(3.0)
    key = partition_key("team-a", content_hash(video))
    env = roots(tmp_path, "queued")
    instance = open_instance(env, monkeypatch)
    instance.add_dynamic_partitions("videos", [key])
    # What a sensor's request becomes in the run queue: a daemon would dequeue it.
    queued = instance.create_run_for_job(
        process_video(),
        status=dg.DagsterRunStatus.QUEUED,
        tags={"dagster/partition": key},
        remote_job_origin=RemoteJobOrigin(
            RemoteRepositoryOrigin(
                InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="video_assets.definitions")),
                "__repository__",
            ),
            "process_video",
        ),
    )
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.QUEUED

    code, (outcome,), err = finish(start_ingest(video, env, tmp_path))
    assert code == 0 and outcome["status"] == "processed", err
    canceled = instance.get_run_by_id(queued.run_id)
    assert canceled.status == dg.DagsterRunStatus.CANCELED
    assert outcome["run_id"] != queued.run_id


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_first_use_of_a_fresh_dagster_home_never_crashes(tmp_path: Path, attempt: int) -> None:
    script = (
        "from video_assets.defs.instance import dagster_instance\n"
        "i = dagster_instance()\n"
        "i.get_dynamic_partitions('videos')\n"
        "print(len(i.get_runs()))\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "fresh")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        assert out.strip() == "0"


def test_state_comparison_sees_a_difference(tmp_path: Path) -> None:
    """The resume test's equality is not vacuous: one changed transcript word differs."""
    a = {"segments": [{"text": "lava flows", "seconds": 1.0}]}
    b = {"segments": [{"text": "lava glows", "seconds": 2.0}]}
    assert _without_volatile(a) != _without_volatile(b)
    assert _without_volatile(a) == _without_volatile({"segments": [{"text": "lava flows", "seconds": 9.0}]})


def test_a_run_past_its_time_limit_is_stopped_and_reported(media, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    video = media.talk(47.0)  # a run of several seconds on any machine: the limit lands inside it
    env = {**roots(tmp_path, "slow"), "VIDEO_RUN_MAX_RUNTIME_SECONDS": "2"}
    code, outcomes, err = finish(start_ingest(video, env, tmp_path))
    assert code == 1 and [o["status"] for o in outcomes] == ["failed"], (outcomes, err[-3000:])
    (outcome,) = outcomes
    assert "passed VIDEO_RUN_MAX_RUNTIME_SECONDS=2" in outcome["message"], (outcome, err[-3000:])
    run = open_instance(env, monkeypatch).get_run_by_id(outcome["run_id"])
    assert run.status == dg.DagsterRunStatus.FAILURE and run.tags["dagster/max_runtime"] == "2"


def test_a_pool_slot_of_a_run_that_ended_is_freed_at_the_next_reap(instance: dg.DagsterInstance) -> None:
    """Dagster fails a worker its code server saw die, but its slot waits for run monitoring's pass."""
    from video_assets.definitions import process_video
    from video_assets.defs.run_health import reap_dead_runs

    run = instance.create_run_for_job(process_video(), tags={"dagster/partition": "team-a--0123456789abcdef"})
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", run.run_id, "transcripts").is_claimed
    reap_dead_runs(instance)
    assert storage.get_concurrency_info("gpu").active_run_ids == {run.run_id}  # running: kept
    instance.report_run_failed(run, "the worker was killed")
    reap_dead_runs(instance)
    assert storage.get_concurrency_info("gpu").active_run_ids == set()
