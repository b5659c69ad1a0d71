"""The Dagster instance the CLI and the tests use: the one under DAGSTER_HOME, with the repo's dagster.yaml."""

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

import dagster as dg

from video_assets.locations import default_dagster_home

_log = logging.getLogger(__name__)
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
# A daemon whose heartbeat is older than this is taken as not running.
DAEMON_HEARTBEAT_FRESH_SECONDS = 120.0


def dagster_instance() -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME (default: see locations.py), set up with the repo's dagster.yaml.

    SQLite storages create their tables and run their migrations on first use, without a lock: two
    CLIs starting on a fresh DAGSTER_HOME crash with "table runs already exists" or an alembic head
    conflict. The first use happens here, under a lock file, so whoever comes second finds it done.
    """
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default_dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".video-assets-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (home / "dagster.yaml").exists() and REPO_DAGSTER_YAML.exists():
                shutil.copyfile(REPO_DAGSTER_YAML, home / "dagster.yaml")
            elif "dagster/partition" not in (home / "dagster.yaml").read_text():
                _log.warning(
                    "%s has no run-queue limit of one run per video (tag_concurrency_limits on dagster/partition, "
                    "see the project's dagster.yaml): runs of one video from the UI may overlap",
                    home / "dagster.yaml",
                )
            instance = dg.DagsterInstance.get()
            instance.get_runs(limit=1)
            instance.get_dynamic_partitions("videos")
            instance.get_daemon_heartbeats()
            instance.event_log_storage.get_concurrency_keys()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return instance


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """A dagster-daemon (`dagster dev`, or `dagster-daemon run`) is dequeuing runs for this instance."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_HEARTBEAT_FRESH_SECONDS
