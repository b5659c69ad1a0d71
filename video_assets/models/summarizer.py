"""A whole-video summary from its segment texts: an LLM when an endpoint is configured, else extractive.

The LLM path talks to any OpenAI-compatible chat-completions endpoint (or Azure OpenAI) with the
original worker's settings (temperature 0.3, max_tokens 1000). Inputs longer than `max_input_chars`
are summarised part by part and the part summaries summarised again, so any video length fits.
The API key goes only to the endpoint: never into logs, errors or the returned metadata.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from video_assets.models.embedder import words

logger = logging.getLogger(__name__)

TEMPERATURE = 0.3
MAX_TOKENS = 1000
SYSTEM_PROMPT = "You are a helpful assistant that summarizes video content."
SUMMARY_PROMPT = (
    "Below are descriptions of consecutive segments of one video: what is shown (captions) and what "
    "is said (transcript). Write a concise summary of the whole video.\n\n{segments}"
)
PART_PROMPT = (
    "Below are descriptions of consecutive segments of part {part} of {parts} of one video: what is "
    "shown (captions) and what is said (transcript). Summarise this part concisely.\n\n{segments}"
)
COMBINE_PROMPT = (
    "Below are summaries of the consecutive parts of one video, in order. Combine them into one "
    "concise summary of the whole video.\n\n{segments}"
)
# Retried with backoff: rate limits, server errors, timeouts and connection failures (APITimeoutError
# is an APIConnectionError). Any other error, such as a 401 or 404, will not heal by waiting.
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
MAX_RETRY_DELAY = 30.0
EXTRACTIVE_MAX_CHARS = 1000
MIN_SENTENCE_WORDS = 4  # shorter "sentences" are caption fragments such as "Colours: red."
MAX_OVERLAP = 0.6  # a sentence sharing more of its words with one already picked adds nothing new

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Summary:
    text: str
    method: str  # "llm" or "extractive"
    model: str | None
    endpoint: str | None  # the base URL without credentials or query
    chunks: int  # parts summarised separately before combining; 1 when it fit in one request


class SummarizerError(RuntimeError):
    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # the endpoint was unreachable or overloaded, not refusing the request


def summarize_video(
    segment_texts: list[str],
    *,
    base_url: str | None,
    api_key: str | None,
    model: str,
    azure_api_version: str | None = None,
    max_input_chars: int = 12000,
    timeout: float = 60,
    max_retries: int = 5,
    retry_base_delay: float = 1.0,
) -> Summary:
    """Summarise a video; without `base_url`, an extractive summary of its most central sentences."""
    texts = [t.strip() for t in segment_texts if t and t.strip()]
    if not base_url:
        return Summary(extractive_summary(texts), "extractive", None, None, 1 if texts else 0)
    chat = ChatEndpoint(
        base_url,
        api_key,
        model,
        azure_api_version,
        timeout=timeout,
        max_retries=max_retries,
        retry_base_delay=retry_base_delay,
    )
    if not texts:
        return Summary("", "llm", model, chat.endpoint, 0)
    parts = chunk_texts(texts, max_input_chars)
    if len(parts) == 1:
        return Summary(chat.complete(SUMMARY_PROMPT.format(segments=parts[0])), "llm", model, chat.endpoint, 1)
    summaries = [
        chat.complete(PART_PROMPT.format(part=i, parts=len(parts), segments=part))
        for i, part in enumerate(parts, start=1)
    ]
    return Summary(combine(chat, summaries, max_input_chars), "llm", model, chat.endpoint, len(parts))


def combine(chat: ChatEndpoint, summaries: list[str], max_input_chars: int) -> str:
    """Reduce part summaries to one, in rounds while even the summaries exceed one request."""
    while len(summaries) > 1:
        groups = chunk_texts(summaries, max_input_chars)
        if len(groups) == 1:
            return chat.complete(COMBINE_PROMPT.format(segments=groups[0]))
        if len(groups) == len(summaries):
            # No two summaries fit in one request, so grouping would never converge: cut each to its share.
            share = max_input_chars // len(summaries)
            return chat.complete(COMBINE_PROMPT.format(segments="\n\n".join(s[:share] for s in summaries)))
        summaries = [chat.complete(COMBINE_PROMPT.format(segments=group)) for group in groups]
    return summaries[0]


def chunk_texts(texts: Sequence[str], max_chars: int) -> list[str]:
    """Consecutive texts joined by blank lines into parts of at most `max_chars`; longer texts are split."""
    pieces = [text[i : i + max_chars] for text in texts for i in range(0, len(text), max_chars)]
    parts: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if current and len(candidate) > max_chars:
            parts.append(current)
            candidate = piece
        current = candidate
    if current:
        parts.append(current)
    return parts or [""]


def public_endpoint(base_url: str) -> str:
    """The base URL as safe to log: no user:password@ and no query (some gateways take keys there)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ChatEndpoint:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        azure_api_version: str | None,
        *,
        timeout: float,
        max_retries: int,
        retry_base_delay: float,
    ) -> None:
        self.endpoint = public_endpoint(base_url)
        self.model = model
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self._secret = api_key or ""
        # A placeholder rather than None: with None the client would read OPENAI_API_KEY from the
        # environment and send that key to whatever endpoint is configured here.
        key = api_key or "no-key"
        # max_retries=0: retries happen in `complete`, which knows the endpoint and logs each one.
        if azure_api_version:
            self.client: openai.OpenAI = openai.AzureOpenAI(
                azure_endpoint=base_url,
                api_key=key,
                api_version=azure_api_version,
                max_retries=0,
                timeout=timeout,
            )
        else:
            self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)

    def complete(self, prompt: str) -> str:
        messages: Any = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        attempt = 0
        while True:
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=messages, temperature=TEMPERATURE, max_tokens=MAX_TOKENS
                )
                return (response.choices[0].message.content or "").strip()
            except RETRYABLE as exc:
                if attempt >= self.max_retries:
                    raise self._error(exc, attempt + 1, transient=True) from None
                delay = self._delay(attempt)
                logger.warning(
                    "summary request to %s failed (%s); retry %d of %d in %.2f s",
                    self.endpoint,
                    self._describe(exc),
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
                attempt += 1
            except openai.OpenAIError as exc:
                raise self._error(exc, attempt + 1) from None

    def _delay(self, attempt: int) -> float:
        """Exponential backoff, jittered to 50-100% so workers retrying together spread out."""
        return min(MAX_RETRY_DELAY, self.retry_base_delay * 2**attempt) * random.uniform(0.5, 1.0)

    def _describe(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        if status is None:
            cause = f"{type(exc).__name__}: {exc}"
        else:
            body = getattr(exc, "body", None)  # the error object the endpoint sent, when it sent JSON
            detail = body.get("message") if isinstance(body, dict) else None
            cause = f"HTTP {status}" + (f": {str(detail)[:300]}" if detail else "")
        # Belt and braces: an endpoint echoing the request must not put the key into our messages.
        return cause.replace(self._secret, "***") if self._secret else cause

    def _error(self, exc: Exception, attempts: int, *, transient: bool = False) -> SummarizerError:
        return SummarizerError(
            f"summary request to {self.endpoint} failed after {attempts} attempt(s): {self._describe(exc)}",
            transient=transient,
        )


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def extractive_summary(segment_texts: Sequence[str], max_chars: int = EXTRACTIVE_MAX_CHARS) -> str:
    """The most central sentences, in video order, up to `max_chars`.

    A sentence is central when its words recur across the whole video (log-scaled counts, averaged
    over its distinct words); near-repeats of a sentence already picked are skipped.
    """
    sentences = [(i, j, s) for i, text in enumerate(segment_texts) for j, s in enumerate(split_sentences(text))]
    document = Counter(w for _, _, s in sentences for w in words(s))

    def centrality(sentence: str) -> float:
        distinct = set(words(sentence))
        if len(distinct) < MIN_SENTENCE_WORDS:
            return 0.0
        # Summed in a fixed order: a set's order follows PYTHONHASHSEED, and a float sum in another
        # order can break a tie the other way, so the same video would get another description.
        return sum(math.log1p(document[w]) for w in sorted(distinct)) / math.sqrt(len(distinct))

    # Equal scores keep video order, never the order a hash gave.
    scored = sorted(((centrality(s), (i, j, s)) for i, j, s in sentences), key=lambda pair: (-pair[0], pair[1][:2]))
    if scored and scored[0][0] > 0:  # fragments (score 0) only when the video has nothing else
        scored = [pair for pair in scored if pair[0] > 0]
    picked: list[tuple[int, int, str]] = []
    used = 0
    for _, item in scored:
        distinct = set(words(item[2]))
        if any(_overlap(distinct, set(words(p[2]))) > MAX_OVERLAP for p in picked):
            continue
        if picked and used + len(item[2]) + 1 > max_chars:
            continue
        picked.append(item)
        used += len(item[2]) + 1
    return " ".join(s for _, _, s in sorted(picked))[:max_chars]


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))
