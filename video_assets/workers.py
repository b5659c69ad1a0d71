"""`video-assets workers`: one Celery worker per GPU, each seeing only its own device.

Each worker is celery's own worker entry on the instance's `CeleryRunLauncher` app
(video_assets/celery_app.py), with CUDA_VISIBLE_DEVICES set to its device and a concurrency of one:
a run launched to the queue executes whole on one device, and a device never runs two runs at once.
The workers run in the foreground until SIGINT or SIGTERM, which stops them: a warm shutdown first
(the run in progress may finish), then, past the grace period, SIGKILL to each worker's whole process
group. A worker that exits on its own stops the others too: the service manager restarts the set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import dagster as dg

GPU_POOL = "gpu"
DEFAULT_QUEUE = "gpu"
CPU = ""  # CUDA_VISIBLE_DEVICES="" : no device visible, the models run on the CPU


@dataclass
class Worker:
    device: str  # CUDA_VISIBLE_DEVICES of the worker ("" for a CPU worker)
    name: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid


def visible_gpus() -> list[str]:
    """The GPUs of this machine: torch's count when torch is importable, else nvidia-smi's list."""
    try:
        import torch

        if torch.cuda.is_available():
            return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        if out.returncode == 0:
            return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return []


def parse_devices(text: str | None) -> list[str]:
    """`--devices 0,1` as given; without it every visible GPU, or one CPU worker where there is none."""
    if text is None:
        return visible_gpus() or [CPU]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise ValueError(f"--devices {text!r}: name at least one device, e.g. --devices 0,1")
    if len(set(devices)) != len(devices):
        raise ValueError(f"--devices {text!r}: a device can have one worker only")
    return devices


def worker_command(queue: str, name: str, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "video_assets.celery_app",
        "worker",
        "--queues",
        queue,
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--hostname",
        name,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]


def worker_environment(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    return {**(os.environ if base is None else base), "CUDA_VISIBLE_DEVICES": device}


def set_gpu_pool(instance: dg.DagsterInstance, limit: int) -> int:
    """The "gpu" pool's limit, as `dagster instance concurrency set gpu N` sets it."""
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, limit)
    return limit


def start_workers(devices: Sequence[str], queue: str, loglevel: str = "INFO") -> list[Worker]:
    workers = []
    for device in devices:
        label = f"dev{device}" if device != CPU else "cpu"
        name = f"{queue}-{label}@{socket.gethostname()}"
        process = subprocess.Popen(
            worker_command(queue, name, loglevel),
            env=worker_environment(device),
            start_new_session=True,  # a process group of its own: stopped whole, never by the terminal's ^C
        )
        workers.append(Worker(device, name, process))
    return workers


def stop_workers(workers: Sequence[Worker], grace: float) -> None:
    """SIGTERM to each worker (Celery's warm shutdown), then SIGKILL to the process group of any
    still there after `grace` seconds, and to every group in the end (pool children left behind)."""
    for worker in workers:
        if worker.process.poll() is None:
            _signal(worker.pid, signal.SIGTERM, group=False)
    deadline = time.monotonic() + grace
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        _signal(worker.pid, signal.SIGKILL, group=True)
        worker.process.wait()


def _signal(pid: int, signum: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum) if group else os.kill(pid, signum)  # the worker leads its own group


def run_workers(
    devices: Sequence[str],
    queue: str,
    *,
    pool_limit: int | None = None,
    grace: float = 60.0,
    loglevel: str = "INFO",
    out: TextIO = sys.stdout,
) -> int:
    """Start the workers and supervise them until a signal or one of them exits; then stop them all.

    The "gpu" pool is set to `pool_limit`, by default the number of devices here (with several GPU
    machines on one instance, pass the total)."""
    from video_assets.defs.instance import dagster_instance

    instance = dagster_instance()
    try:
        from dagster_celery.launcher import CeleryRunLauncher

        if not isinstance(instance.run_launcher, CeleryRunLauncher):
            print(
                f"video-assets workers: {os.environ['DAGSTER_HOME']}/dagster.yaml does not use CeleryRunLauncher: "
                "copy deploy/dagster-celery.yaml there",
                file=sys.stderr,
            )
            return 2
        limit = set_gpu_pool(instance, len(devices) if pool_limit is None else pool_limit)
    finally:
        instance.dispose()

    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = start_workers(devices, queue, loglevel)
    try:
        print(f"video-assets workers: queue {queue}, pool {GPU_POOL} = {limit}", file=out, flush=True)
        for worker in workers:
            shown = worker.device if worker.device != CPU else '""'
            print(f"worker {worker.name} pid {worker.pid} CUDA_VISIBLE_DEVICES={shown}", file=out, flush=True)
        code = 0
        while not stop["signal"]:
            ended = [w for w in workers if w.process.poll() is not None]
            if ended:
                for w in ended:
                    print(
                        f"video-assets workers: worker {w.name} exited ({w.process.returncode}): stopping the others",
                        file=sys.stderr,
                    )
                code = 1
                break
            time.sleep(0.5)
    finally:
        stop_workers(workers, grace)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
