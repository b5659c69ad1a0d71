"""The summarizer against a real chat-completions HTTP server on loopback, and its extractive default."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from video_assets.models.summarizer import (
    SummarizerError,
    Summary,
    chunk_texts,
    public_endpoint,
    summarize_video,
)
from video_assets_tests.chat_server import ChatServer

FAKE_KEY = "sk-test-DO-NOT-LEAK-7f3a9c"
SEGMENTS = [
    'Caption: On-screen text: "VOLCANO". Transcript: The volcano erupted at dawn; lava reached the valley.',
    "Caption: Colours: black. Dark. Transcript: Villagers were evacuated by bus before the lava arrived.",
]


def summarize(server: ChatServer, texts: list[str] = SEGMENTS, **options: Any) -> Summary:
    options = {"api_key": FAKE_KEY, "model": "test-model", "retry_base_delay": 0.01, **options}
    return summarize_video(texts, base_url=server.base_url, **options)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything logged at any level, the openai and HTTP client libraries included."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_llm_summary_is_what_the_endpoint_answered() -> None:
    with ChatServer(reply="A volcano erupts and a village is evacuated.") as server:
        summary = summarize(server)

    assert summary.text == "A volcano erupts and a village is evacuated."
    assert (summary.method, summary.model, summary.endpoint, summary.chunks) == (
        "llm",
        "test-model",
        server.base_url,
        1,
    )
    [request] = server.requests
    assert request.body["temperature"] == 0.3 and request.body["max_tokens"] == 1000
    assert request.body["model"] == "test-model"
    assert all(text in request.prompt for text in SEGMENTS)
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"  # the key goes to the endpoint only


def test_rate_limit_is_retried_until_success(debug_logs: pytest.LogCaptureFixture) -> None:
    with ChatServer(statuses=[429], reply="Fine now.") as server:
        summary = summarize(server)

    assert summary.text == "Fine now."
    assert len(server.requests) == 2
    assert "retry 1 of 5" in debug_logs.text and server.base_url in debug_logs.text
    assert FAKE_KEY not in debug_logs.text


def test_persistent_server_error_names_the_endpoint_and_status_never_the_key(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    with ChatServer(then=500) as server, pytest.raises(SummarizerError) as failure:
        summarize(server, max_retries=2)

    message = str(failure.value)
    assert server.base_url in message and "500" in message and "3 attempt" in message
    assert len(server.requests) == 3
    assert FAKE_KEY not in message
    assert FAKE_KEY not in debug_logs.text
    assert failure.value.__cause__ is None and failure.value.__context__ is not None  # suppressed, not chained


def test_client_errors_fail_at_once() -> None:
    with ChatServer(then=401) as server, pytest.raises(SummarizerError, match="HTTP 401") as failure:
        summarize(server)

    assert len(server.requests) == 1
    assert not failure.value.transient  # the step is not retried either: a wrong key stays wrong


def test_connection_refused_is_retried_then_reported() -> None:
    with ChatServer() as server:
        base_url = server.base_url
    # The server is stopped: nothing listens on its port any more.
    with pytest.raises(SummarizerError, match="APIConnectionError") as failure:
        summarize_video(SEGMENTS, base_url=base_url, api_key=FAKE_KEY, model="m", max_retries=1, retry_base_delay=0.01)
    assert failure.value.transient  # the description step's RetryPolicy tries again later

    assert base_url in str(failure.value) and "2 attempt" in str(failure.value)


def test_long_input_is_summarised_in_parts_then_combined() -> None:
    segments = [f"Segment {i}: " + "the lava flows slowly " * 20 for i in range(12)]  # ~450 chars each

    def reply(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        return "combined summary" if prompt.startswith("Below are summaries") else f"part summary {prompt[60:70]}"

    with ChatServer(reply=reply) as server:
        summary = summarize(server, segments, max_input_chars=1000)

    parts = [r for r in server.requests if "Summarise this part" in r.prompt]
    combines = [r for r in server.requests if "Combine them" in r.prompt]
    assert summary.text == "combined summary"
    assert summary.chunks == len(parts) == 6  # two ~450-char segments per 1000-char part
    assert len(combines) == 1 and len(server.requests) == 7
    assert all(len(r.body["messages"][-1]["content"]) < 1000 + 300 for r in server.requests)  # part + instructions
    assert "Segment 0:" in parts[0].prompt and "Segment 11:" in parts[-1].prompt


def test_chunks_never_exceed_the_limit() -> None:
    texts = ["a" * 2500, "b" * 10, "c" * 990]

    parts = chunk_texts(texts, 1000)

    assert all(len(p) <= 1000 for p in parts)
    assert "".join(parts).replace("\n", "") == "".join(texts)


def test_endpoint_in_metadata_has_no_credentials() -> None:
    assert public_endpoint("https://user:secret@llm.example.com:8443/v1?key=abc") == "https://llm.example.com:8443/v1"


def test_without_an_endpoint_the_summary_is_extractive_and_says_so() -> None:
    segments = [
        "Transcript: The volcano near the village erupted early this morning.",
        "Caption: Colours: red. Bright. Transcript: Lava from the volcano reached the village road.",
        "Transcript: Buses took every family from the village to the school in the next town.",
        "Transcript: Um, okay.",
    ]

    summary = summarize_video(segments, base_url=None, api_key=FAKE_KEY, model="unused")

    assert (summary.method, summary.model, summary.endpoint) == ("extractive", None, None)
    assert "volcano near the village erupted" in summary.text
    assert "Colours: red." not in summary.text and "Um, okay." not in summary.text  # fragments left out
    assert summary.text.index("erupted") < summary.text.index("Lava from")  # video order
    assert len(summary.text) <= 1000


def test_extractive_summary_is_capped_and_empty_input_is_empty() -> None:
    long_segments = [
        f"Speaker {i} explains how the eruption of the volcano changed life in the valley." for i in range(80)
    ]

    assert len(summarize_video(long_segments, base_url="", api_key=None, model="m").text) <= 1000
    assert summarize_video([], base_url=None, api_key=None, model="m").text == ""


def test_extractive_summary_is_the_same_under_every_hash_seed() -> None:
    """Two sentences score alike in exact arithmetic; summed in a hash-seeded order they used to tie
    either way, so one video got two descriptions (4 of 31 seeds before the fix)."""
    import subprocess
    import sys

    script = (
        "from video_assets.models.summarizer import extractive_summary;"
        "fill = 'Banana cherry. Cherry date. Date elder. Date elder. Elder. Grape honey. Honey iris. "
        "Iris juniper. Iris juniper. Juniper.';"
        "print(extractive_summary(['Apple banana cherry date elder. ' + fill, 'Fig grape honey iris juniper.'], 40))"
    )
    outputs = set()
    for seeds in [range(start, start + 2) for start in range(0, 24, 2)]:
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={"PYTHONHASHSEED": str(seed)}
            )
            for seed in seeds
        ]
        outputs |= {run.communicate(timeout=60)[0] for run in runs}
    assert outputs == {"Apple banana cherry date elder.\n"}
