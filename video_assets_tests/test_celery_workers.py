"""GPU workers for real: Dagster's CeleryRunLauncher sends whole runs to `video-assets workers`.

A real broker on loopback (Redis database 7, a queue of the test's own), real Celery workers with
pretend devices 7 and 8, real
`video-assets ingest` processes at once, a worker's run process killed with SIGKILL mid-run, and the
workers stopped by SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from video_assets.defs.run_health import PROCESS_TAG
from video_assets_tests.test_runs import finish, open_instance, video_runs

REPO = Path(__file__).resolve().parents[1]
GPU_STEPS = ("transcripts", "captions", "embeddings")
STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
REDIS_DB = 7


# The services every session and CI start: Redis on 6379 is the broker and the result backend.
BROKER = (f"redis://127.0.0.1:6379/{REDIS_DB}", f"redis://127.0.0.1:6379/{REDIS_DB}")


@pytest.fixture
def celery_env(tmp_path: Path) -> dict[str, str]:
    queue = f"gpu-test-{uuid.uuid4().hex[:8]}"  # the broker may be shared: this test's runs only
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster-celery.yaml", dagster_home / "dagster.yaml")
    broker, backend = BROKER  # type: ignore[misc]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "VIDEO_ASSETS_HOME": str(tmp_path / "data"),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": backend,
        "VIDEO_RUN_QUEUE": queue,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    yield env
    _delete_queue(broker, queue)


def _delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(broker, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


def _start_workers(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "video_assets.cli", "workers", "--devices", "7,8", "--queue", env["VIDEO_RUN_QUEUE"]]
        + ["--grace", "20", "--loglevel", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=env,
        start_new_session=True,
    )
    pids: dict[str, int] = {}
    while len(pids) < 2:  # "worker <name> pid <pid> CUDA_VISIBLE_DEVICES=<device>"
        line = process.stdout.readline()
        assert line, f"video-assets workers ended: {log.read_text()[-3000:]}"
        if line.startswith("worker "):
            words = line.split()
            pids[words[-1].split("=", 1)[1]] = int(words[3])
    return process, pids


def _start_ingest(videos: list[Path], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "video_assets.cli", "ingest", *map(str, videos), "-w", "team-a", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _a_run_in_a_gpu_step(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, int]:
    """The first run a worker executes that is in its `transcripts` step: (run, pid of its process)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for run in video_runs(instance):
            process = run.tags.get(PROCESS_TAG)
            if process and run.status == dg.DagsterRunStatus.STARTED:
                events = instance.all_logs(run.run_id, of_type=STEP_EVENTS)
                seen = {(r.dagster_event.event_type, r.dagster_event.step_key) for r in events}
                started = (dg.DagsterEventType.STEP_START, "transcripts") in seen
                if started and (dg.DagsterEventType.STEP_SUCCESS, "transcripts") not in seen:
                    return run, int(process.split("/")[1])
        time.sleep(0.05)
    raise AssertionError("no worker started a run's transcripts step")


def _gpu_step_devices(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    devices = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = record.dagster_event
        if event.step_key in GPU_STEPS:
            devices[event.step_key] = event.step_materialization_data.materialization.metadata["visible_devices"].value
    return devices


def test_workers_run_whole_runs_one_per_device_and_a_killed_worker_fails_its_run(
    media, tmp_path: Path, celery_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    videos = [media.silent_pattern(seconds) for seconds in (3.0, 3.5, 4.0, 4.5)]
    workers, worker_pids = _start_workers(celery_env, tmp_path / "workers.log")
    ingests: list[subprocess.Popen[str]] = []
    try:
        instance = open_instance(celery_env, monkeypatch)
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 2  # one slot per device
        # One `ingest` of three files (its runs are launched at once) beside another of one file.
        ingests = [_start_ingest(videos[:3], celery_env, tmp_path), _start_ingest(videos[3:], celery_env, tmp_path)]

        victim, victim_pid = _a_run_in_a_gpu_step(instance)
        # The run's process is the worker's pool process executing it, on the worker's one device.
        victim_device = _environ(victim_pid)["CUDA_VISIBLE_DEVICES"]
        assert _parent(victim_pid) == worker_pids[victim_device]
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.time()

        results = [finish(p, timeout=240) for p in ingests]
        outcomes = {o["run_id"]: (code, o, err) for code, printed, err in results for o in printed}
        assert len(outcomes) == len(videos), results
        assert not any("already registered" in err for _, _, err in results)  # no Celery notice for a person
        code, outcome, err = outcomes.pop(victim.run_id)
        assert code == 1 and outcome["status"] == "failed", err[-3000:]
        assert "is gone" in outcome["message"], outcome
        assert instance.get_run_by_id(victim.run_id).status == dg.DagsterRunStatus.FAILURE  # not left STARTED
        for _, outcome, err in outcomes.values():
            assert outcome["status"] == "processed", err[-3000:]

        spans: list[tuple[str, float, float, str]] = [
            (victim_device, victim_start(instance, victim), killed_at, "killed")
        ]
        for run_id in outcomes:
            run = instance.get_run_by_id(run_id)
            assert run.tags["dagster-celery/queue"] == celery_env["VIDEO_RUN_QUEUE"]
            devices = _gpu_step_devices(instance, run_id)
            assert set(devices) == set(GPU_STEPS), devices
            (device,) = set(devices.values())  # every GPU step of a run saw the same one device
            assert device in {"7", "8"}
            record = instance.get_run_record_by_id(run_id)
            spans.append((device, record.start_time, record.end_time, run_id))
        assert {device for device, *_ in spans[1:]} <= {"7", "8"}
        overlapping = 0
        for i, (device_a, start_a, end_a, a) in enumerate(spans):
            for device_b, start_b, end_b, b in spans[i + 1 :]:
                if start_a < end_b and start_b < end_a:
                    overlapping += 1
                    assert device_a != device_b, f"runs {a[:8]} and {b[:8]} overlapped on device {device_a}"
        assert overlapping, f"no two runs ran at once: {spans}"
        first = min(start for _, start, _, _ in spans)
        for device, start, end, run_id in spans:
            print(f"device {device}: run {run_id[:8]} {start - first:6.1f} s to {end - first:6.1f} s")

        workers.send_signal(signal.SIGTERM)
        assert workers.wait(timeout=60) == 0, (tmp_path / "workers.log").read_text()[-3000:]
        deadline = time.monotonic() + 10  # the pool processes SIGKILLed with their group are gone a moment later
        while _processes_mentioning(celery_env["VIDEO_RUN_QUEUE"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_mentioning(celery_env["VIDEO_RUN_QUEUE"]) == []
        for pid in worker_pids.values():
            assert not Path(f"/proc/{pid}").exists()
    finally:
        for process in ingests:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        if workers.poll() is None:
            os.killpg(workers.pid, signal.SIGKILL)
        for pid in worker_pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        workers.wait(timeout=30)
    print(f"celery workers test: {time.monotonic() - started:.1f} s")


def victim_start(instance: dg.DagsterInstance, run: dg.DagsterRun) -> float:
    return instance.get_run_record_by_id(run.run_id).start_time


def test_devices_one_worker_each_or_one_cpu_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from video_assets import workers

    assert workers.parse_devices("0,1") == ["0", "1"]
    assert workers.parse_devices(" 3 ") == ["3"]
    for bad in ("", ",", "1,1"):
        with pytest.raises(ValueError):
            workers.parse_devices(bad)
    monkeypatch.setattr(workers, "visible_gpus", lambda: [])
    assert workers.parse_devices(None) == [workers.CPU]  # no GPU: one worker, CUDA_VISIBLE_DEVICES=""
    monkeypatch.setattr(workers, "visible_gpus", lambda: ["0", "1", "2"])
    assert workers.parse_devices(None) == ["0", "1", "2"]
    assert workers.worker_environment("7", {"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "7"}
    command = workers.worker_command("gpu", "gpu-dev7@host")
    assert command[command.index("--concurrency") + 1] == "1" and command[command.index("--queues") + 1] == "gpu"


def test_visible_devices_metadata_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from video_assets.defs.common import visible_devices

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_devices() == "none"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_devices() == "none"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert visible_devices() == "7"


def test_workers_refuse_an_instance_without_the_celery_launcher(data_home: Path, capsys) -> None:  # noqa: ANN001
    from video_assets.cli import main

    assert main(["workers", "--devices", "0"]) == 2
    assert "does not use CeleryRunLauncher" in capsys.readouterr().err
