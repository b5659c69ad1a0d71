"""The production instance shape: Dagster's storage on PostgreSQL (dagster-postgres), pools included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from video_assets.definitions import defs
from video_assets_tests.test_sensor import Ticker, upload

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

pytestmark = pytest.mark.services


@pytest.fixture
def postgres_instance(tmp_path: Path, data_home: Path) -> Iterator[dg.DagsterInstance]:
    """A fresh database on the machine's PostgreSQL, and the repo's dagster.yaml pointed at it."""
    database = f"dagster_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    config = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
    config["storage"] = {"postgres": {"postgres_url": f"postgresql://postgres@127.0.0.1:5432/{database}"}}
    home = tmp_path / "pg_dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()
        admin.cursor().execute(f"DROP DATABASE {database} WITH (FORCE)")
        admin.close()


def test_sensor_and_run_on_postgres_storage(media, data_home: Path, postgres_instance: dg.DagsterInstance) -> None:
    instance = postgres_instance
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert instance.event_log_storage.supports_global_concurrency_limits  # pools are enforced here

    upload(media.talk(47.0), data_home, "standup.mp4")
    (request,) = Ticker(instance, data_home).tick().run_requests
    assets = [a for a in defs.assets if a.key.to_user_string() in {"segments", "transcripts"}]
    result = dg.materialize(assets, partition_key=request.partition_key, instance=instance, resources=defs.resources)
    assert result.success
    assert instance.get_materialized_partitions(dg.AssetKey("transcripts")) == {request.partition_key}
    assert instance.get_dynamic_partitions("videos") == [request.partition_key]
