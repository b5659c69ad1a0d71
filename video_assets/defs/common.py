"""Small pieces every asset module shares."""

import hashlib
import json
from typing import Any

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.timecodes import clock

GROUP = "video"


def video_asset(**kwargs: Any) -> Any:
    """`dg.asset` for a per-video asset: partitioned by video, in the group the job runs."""
    return dg.asset(partitions_def=videos_partitions, group_name=GROUP, **kwargs)


def fail(context: dg.OpExecutionContext, error: Exception | str, **metadata: object) -> dg.Failure:
    """A failure whose message names the file (or endpoint) and the cause, in the run's log and the UI."""
    message = str(error)
    context.log.error(message)
    return dg.Failure(description=message, metadata={k: str(v) for k, v in metadata.items()}, allow_retries=False)


def digest(value: object) -> str:
    """A short content hash: Dagster data versions and the inputs fingerprints of model steps."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def timed_excerpt(bounds: list[tuple[float, float]], texts: list[str], *, empty: str, limit: int = 12) -> str:
    """Markdown lines `start–end text` for the segments that have text, for an asset's metadata."""
    lines = [f"- **{clock(start)}–{clock(end)}** {text}" for (start, end), text in zip(bounds, texts) if text]
    if not lines:
        return empty
    more = f"\n- … {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more
