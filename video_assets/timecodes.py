"""Times as people read them in a video player, for the CLI and the UI alike (no Dagster here)."""


def clock(seconds: float) -> str:
    """`mm:ss`, or `h:mm:ss` past an hour."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
