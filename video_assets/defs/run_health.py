"""Which process runs a run, and what happens to runs whose process died.

Dagster's run monitoring can only ask a run launcher whether a run's worker is alive, and the
default launcher (and a CLI process running a run itself) cannot answer: a run killed with
SIGKILL or by the OOM killer would stay STARTED and keep its pool slots forever. Each run records
its process in a tag; `reap_dead_runs` fails the runs whose process is gone and frees their slots.
The upload sensor calls it every tick (so with the daemon up it happens within seconds) and the CLI
before it runs anything (so it happens without a daemon too).
"""

import os
import socket
from pathlib import Path

import dagster as dg

# "<host>/<pid>/<process start time>": a reused pid is another process.
PROCESS_TAG = "video_assets/process"
# Runs whose steps leave the run worker's process (a multiprocess, Celery or k8s executor) set this
# tag themselves; their launcher's own health check applies instead.
NOT_TRACKED = "not-tracked"
# Set on a run this module failed: the next ingest of the video resumes it instead of reporting it.
REAPED_TAG = "video_assets/process_died"
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def this_process() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, after the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def process_gone(process: str) -> bool:
    host, _, rest = process.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process (or not tracked): not ours to judge
    return not Path(f"/proc/{pid}").exists() or (started != "?" and _start_time(int(pid)) != started)


def record_run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Tag a run with the process running it, when nobody did (a run the daemon launched)."""
    if PROCESS_TAG not in run.tags:
        instance.add_run_tags(run.run_id, {PROCESS_TAG: this_process()})


def reap_dead_runs(instance: dg.DagsterInstance, partition_key: str | None = None) -> list[str]:
    """Runs started on this machine whose process is gone (kill -9, OOM): marked failed and their pool
    slots freed, so neither the next run of the video nor any run waiting on the pool waits forever."""
    tags = {"dagster/partition": partition_key} if partition_key else None
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES, tags=tags)):
        process = run.tags.get(PROCESS_TAG)
        if process and process_gone(process):
            instance.add_run_tags(run.run_id, {REAPED_TAG: "true"})
            instance.report_run_failed(run, f"the process that ran it ({process}) is gone: killed or out of memory")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            reaped.append(run.run_id)
    _free_slots_of_ended_runs(instance)
    return reaped


def _free_slots_of_ended_runs(instance: dg.DagsterInstance) -> None:
    """A worker killed while its code server watched it is failed by Dagster itself, but its pool
    slot stays claimed until run monitoring's next pass (`free_slots_after_run_end_seconds`)."""
    storage = instance.event_log_storage
    for pool in storage.get_concurrency_keys():
        for run_id in storage.get_concurrency_info(pool).active_run_ids:
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
