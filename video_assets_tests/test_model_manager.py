"""The model manager: `video-assets models status|warm`, production names in a local Hugging Face cache,
`video-assets status` as a table, and the GPU smoke script on a machine without CUDA."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from video_assets.models.manager import ModelNotFoundError, cached_snapshot, table

ROOT = Path(__file__).resolve().parents[1]
WHISPER_PROD = "Systran/faster-distil-whisper-large-v3"
VLM_PROD = "openbmb/MiniCPM-V-2_6-int4"
REV_WHISPER = "a" * 40
REV_VLM = "0123456789abcdef0123456789abcdef01234567"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "video_assets.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,  # a hang fails the test instead of stalling it
    )


def model_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = os.environ.copy()
    for name in ("VIDEO_WHISPER_MODEL", "VIDEO_CAPTION_MODEL", "VIDEO_CAPTION_MODEL_REVISION", "OPENAI_BASE_URL"):
        env.pop(name, None)
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(name, None)
    env["HF_HOME"] = str(tmp_path / "hf")
    env["HF_HUB_OFFLINE"] = "1"
    env["VIDEO_ASSETS_HOME"] = str(tmp_path / "data")
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    env.update(variables)
    return env


def test_missing_production_models_are_one_clear_error_naming_the_folder_searched(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()  # an empty cache
    env = model_env(tmp_path, VIDEO_WHISPER_MODEL=WHISPER_PROD, VIDEO_CAPTION_MODEL=VLM_PROD)
    hub = tmp_path / "hf" / "hub"

    status = cli("models", "status", "--json", env=env, timeout=120)
    assert status.returncode == 0, status.stderr
    models = json.loads(status.stdout)["models"]
    for role, repo in (("whisper", WHISPER_PROD), ("captioner", VLM_PROD)):
        folder = str(hub / ("models--" + repo.replace("/", "--")))
        assert not models[role]["ready"] and not models[role]["found"]
        assert models[role]["searched"] == [folder] and models[role]["path"] == folder
        assert repo in models[role]["error"] and folder in models[role]["error"]
    assert models["embedder"]["ready"] and models["summarizer"]["ready"]

    started = time.monotonic()
    warm = cli("models", "warm", env=env, timeout=120)
    assert time.monotonic() - started < 60  # nothing waits on a network or a download
    assert warm.returncode == 1, warm.stdout + warm.stderr
    for repo in (WHISPER_PROD, VLM_PROD):
        folder = str(hub / ("models--" + repo.replace("/", "--")))
        assert f"model {repo} failed" in warm.stderr and folder in warm.stderr
    assert "embedder" in warm.stdout and "ok" in warm.stdout  # the models that are there still load


def _fake_hub_cache(tmp_path: Path) -> tuple[Path, Path]:
    """Whisper tiny.en and the tiny VLM in the hub cache layout, as `huggingface-cli download` leaves them."""
    from video_assets.models.bundled_weights import tiny_en_folder
    from video_assets.models.tiny_vlm import save_tiny_llava

    hub = tmp_path / "hf" / "hub"
    whisper_repo = hub / "models--testorg--faster-whisper-tiny.en"
    whisper_snapshot = whisper_repo / "snapshots" / REV_WHISPER
    whisper_snapshot.mkdir(parents=True)
    for source in tiny_en_folder().iterdir():
        if source.is_file():
            (whisper_snapshot / source.name).symlink_to(source)  # the hub links snapshot files to blobs
    (whisper_repo / "refs").mkdir()
    (whisper_repo / "refs" / "main").write_text(REV_WHISPER)

    vlm_snapshot = hub / "models--testorg--tiny-llava" / "snapshots" / REV_VLM
    vlm_snapshot.mkdir(parents=True)
    save_tiny_llava(vlm_snapshot)
    return whisper_snapshot, vlm_snapshot


def test_models_in_a_local_hub_cache_are_found_and_load(tmp_path: Path) -> None:
    whisper_snapshot, vlm_snapshot = _fake_hub_cache(tmp_path)
    env = model_env(
        tmp_path,
        VIDEO_WHISPER_MODEL="testorg/faster-whisper-tiny.en",
        VIDEO_CAPTION_MODEL="testorg/tiny-llava",
        VIDEO_CAPTION_MODEL_REVISION=REV_VLM,  # pinned, as the production captioner is
    )

    status = cli("models", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    models = report["models"]
    assert models["whisper"]["ready"] and models["whisper"]["path"] == str(whisper_snapshot)
    assert models["captioner"]["ready"] and models["captioner"]["path"] == str(vlm_snapshot)
    assert models["whisper"]["size_bytes"] > 10_000_000  # the symlinked weights, followed
    assert models["captioner"]["size_bytes"] > 100_000
    assert models["whisper"]["device"] == "cpu" and models["captioner"]["device"] == "cpu"
    assert report["gpu"]["cuda_available"] is False and report["gpu"]["note"] == "no CUDA"

    warm = cli("models", "warm", "--json", env=env)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    results = {r["role"]: r for r in json.loads(warm.stdout)["results"]}
    assert set(results) == {"whisper", "captioner", "embedder"}  # no endpoint configured: none checked
    assert all(r["ok"] and r["seconds"] > 0 for r in results.values()), results
    assert results["whisper"]["rss_growth"] > 0 and results["captioner"]["rss_growth"] > 0
    assert "vision-language-model" in results["captioner"]["detail"]

    text = cli("models", "status", env=env)
    header, *rows = text.stdout.splitlines()[:5]
    assert header.split() == ["model", "state", "name", "path", "size", "device", "compute", "type"]
    assert [row.split()[1] for row in rows] == ["ready"] * 4


def test_a_pinned_revision_resolves_through_its_ref_and_a_missing_one_is_named(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--model"
    (repo / "snapshots" / REV_VLM).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(REV_VLM + "\n")
    assert cached_snapshot("org/model", "v1", tmp_path) == repo / "snapshots" / REV_VLM
    assert cached_snapshot("org/model", REV_VLM, tmp_path) == repo / "snapshots" / REV_VLM
    with pytest.raises(ModelNotFoundError, match=f"org/model@{'b' * 40}: revision .* has no snapshot.*{repo}"):
        cached_snapshot("org/model", "b" * 40, tmp_path)
    with pytest.raises(ModelNotFoundError, match="no ref 'main'"):
        cached_snapshot("org/model", None, tmp_path)


def test_warm_checks_the_description_endpoint_only_when_one_is_set(tmp_path: Path) -> None:
    from video_assets_tests.chat_server import ChatServer

    with ChatServer() as server:
        ok = cli("models", "warm", "--json", env=model_env(tmp_path, OPENAI_BASE_URL=server.base_url))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (summarizer,) = [r for r in json.loads(ok.stdout)["results"] if r["role"] == "summarizer"]
    assert summarizer["ok"] and "answered HTTP" in summarizer["detail"]

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = cli("models", "warm", env=model_env(tmp_path, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1"), timeout=120)
    assert down.returncode == 1
    assert "summarizer model gpt-4o-mini failed" in down.stderr and f"127.0.0.1:{port}" in down.stderr


def test_status_prints_the_models_as_an_aligned_table(tmp_path: Path) -> None:
    long_name = "some-organisation/a-rather-long-whisper-model-name-that-used-to-run-into-its-path"
    env = model_env(tmp_path, VIDEO_WHISPER_MODEL=long_name)
    run = cli("status", env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    header, rows = lines[start], lines[start + 1 : start + 5]
    columns = ["name", "path", "found", "device", "compute type"]
    offsets = [header.index(f"  {c}") + 2 for c in columns]
    assert [row.split()[0] for row in rows] == ["whisper", "captioner", "embedder", "summarizer"]
    for row in rows:
        for offset in offsets:  # every cell starts under its heading, after a gap
            assert row[offset - 2 : offset] == "  " and row[offset] != " ", (row, offset)
    whisper = rows[0]
    assert whisper[offsets[0] :].startswith(long_name) and "NOT FOUND" in whisper

    report = json.loads(cli("status", "--json", env=env).stdout)
    assert set(report["models"]) == {"whisper", "captioner", "embedder", "summarizer"}
    assert set(report["models"]["whisper"]) == {"name", "path", "found", "device", "compute_type"}
    assert report["models"]["whisper"]["found"] is False and report["models"]["embedder"]["found"] is True


def test_table_pads_every_column_but_the_last() -> None:
    assert table(["a", "bb", "c"], [["xxx", "y", "z"]]) == ["a    bb  c", "xxx  y   z"]


def test_gpu_smoke_script_without_cuda_says_so_and_exits_0() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: run benchmarks/gpu_smoke.py itself")
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_smoke.py"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "no CUDA device: nothing to measure", run.stdout + run.stderr
