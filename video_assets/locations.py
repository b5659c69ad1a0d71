"""Where data and the Dagster instance live when no variable says: never silently the current folder.

From a checkout (the package beside `workspace.yaml`, as `make` and `pip install -e .` leave it) that
is the project folder: the same `data/` and `dagster_home/` that `make demo` and `make ui` use, from
whichever folder a command runs. A package installed without its checkout uses one per-user folder,
`$XDG_DATA_HOME/video_assets` (~/.local/share/video_assets). VIDEO_ASSETS_HOME and DAGSTER_HOME
override either.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def default_root() -> Path:
    if (PROJECT / "workspace.yaml").is_file() and (PROJECT / "dagster.yaml").is_file():
        return PROJECT
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "video_assets"


def default_data_root() -> Path:
    return default_root() / "data"


def default_dagster_home() -> Path:
    return default_root() / "dagster_home"
