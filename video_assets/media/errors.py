from __future__ import annotations

from pathlib import Path


class MediaError(Exception):
    """A file that cannot be processed as a video; the message names the file and the cause."""

    def __init__(self, path: str | Path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")
