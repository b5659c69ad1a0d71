"""Small pieces every asset module shares."""

import hashlib
import json
import os
from typing import Any

import dagster as dg

from video_assets.defs.partitions import videos_partitions
from video_assets.settings import Settings
from video_assets.timecodes import clock

GROUP = "video"


def video_asset(**kwargs: Any) -> Any:
    """`dg.asset` for a per-video asset: partitioned by video, in the group the job runs."""
    return dg.asset(partitions_def=videos_partitions, group_name=GROUP, **kwargs)


def fail(
    context: dg.OpExecutionContext, error: Exception | str, *, transient: bool = False, **metadata: object
) -> dg.Failure:
    """A failure whose message names the file (or endpoint) and the cause, in the run's log and the UI.

    Only a transient one (an endpoint down, a store busy) is retried by the step's RetryPolicy: a file
    that is not a video stays one however often it is read.
    """
    message = str(error)
    context.log.error(message)
    return dg.Failure(description=message, metadata={k: str(v) for k, v in metadata.items()}, allow_retries=transient)


def transient_retries(settings: Settings) -> dg.RetryPolicy:
    """For steps that talk to another system: a busy vector store or an endpoint that is down for
    longer than the client's own retries gets another chance minutes later, not a failed run."""
    return dg.RetryPolicy(
        max_retries=settings.step_retries,
        delay=settings.step_retry_delay,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


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


def visible_devices() -> str:
    """The CUDA_VISIBLE_DEVICES of the process running a GPU step (a GPU worker's own device), or
    "none" where it is unset or empty: step metadata shows which device each run used."""
    return os.environ.get("CUDA_VISIBLE_DEVICES") or "none"
