"""Finding the moment in a video by what was said or shown: hybrid (dense + keyword) search.

A hit is an answer only when it means what was asked (its dense cosine with the query reaches the
embedding model's calibrated relevance floor) or contains a word of the query (the keyword side);
everything else stays out, so a query about something no video holds returns nothing. Hits keep the
order of Qdrant's reciprocal-rank fusion of both sides, and each carries its dense cosine as `score`.

Imports stay light (no torch, no Dagster): a cold `video-assets search` loads only the embedder and
the vector index.
"""

from __future__ import annotations

from video_assets.models.embedder import load_embedder
from video_assets.settings import Settings
from video_assets.store.held_index import HeldIndex
from video_assets.store.layout import check_workspace
from video_assets.store.vector_access import configured_vector_index
from video_assets.store.vector_index import SearchHit, model_mismatch

MAX_LIMIT = 1000


class SearchError(ValueError):
    """A query search cannot run: the message names the query and the cause."""


def search(
    query: str,
    *,
    workspace: str,
    limit: int = 10,
    min_score: float | None = None,
    settings: Settings | None = None,
    held: HeldIndex | None = None,
) -> list[SearchHit]:
    """Segments (and whole-video descriptions, `segment` None) of `workspace` that answer `query`.

    `min_score` overrides the relevance floor (VIDEO_SEARCH_MIN_SCORE, else the model's calibrated one).
    The workspace filter applies to both sides, so a query never sees another workspace's videos.
    `held`: an index kept open between searches (the web server's); else it is opened for this one.
    """
    settings = settings or Settings.from_env()
    if not query or not query.strip():
        raise SearchError(f"the query {query!r} is empty: say what was said or shown")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"--limit must be between 1 and {MAX_LIMIT}, got {limit} (query {query!r})")
    check_workspace(workspace)
    embedder = load_embedder(settings.embedding_model)
    floor = min_score if min_score is not None else settings.min_score
    if floor is None:
        floor = embedder.relevance_floor
    dense = embedder.embed_query(query).tolist()
    sparse = embedder.sparse([query])[0]
    with held.use() if held is not None else configured_vector_index(settings) as index:
        # Cosines between two models' vectors mean nothing: such an index would quietly answer nothing.
        stored_model = index.index_model()
        if stored_model is not None and stored_model != embedder.name:
            raise model_mismatch(stored_model, embedder.name)
        return index.hybrid_search(dense, sparse, workspace=workspace, limit=limit, min_score=floor)


def hit_as_json(hit: SearchHit) -> dict:
    return {
        "file": hit.file,
        "partition": hit.partition,
        "segment": hit.segment,
        "start": hit.start,
        "end": hit.end,
        "score": round(hit.score, 4),  # the dense cosine of the hit with the query
        "keyword_match": hit.keyword_match,
        "language": hit.language,
        "text": hit.text,
    }
