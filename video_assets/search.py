"""Finding the moment in a video by what was said or shown: hybrid (dense + keyword) search."""

from __future__ import annotations

from video_assets.models.embedder import load_embedder
from video_assets.settings import Settings
from video_assets.store.layout import check_workspace
from video_assets.store.vector_access import configured_vector_index
from video_assets.store.vector_index import SearchHit


def search(query: str, *, workspace: str, limit: int = 10, settings: Settings | None = None) -> list[SearchHit]:
    """Segments (and whole-video descriptions, `segment` None) of `workspace` best matching `query`.

    Dense and keyword candidates are fused by reciprocal rank in Qdrant's Query API; the workspace
    filter applies to both, so a query never sees another workspace's videos.
    """
    settings = settings or Settings.from_env()
    check_workspace(workspace)
    embedder = load_embedder(settings.embedding_model)
    dense = embedder.embed([query])[0].tolist()
    sparse = embedder.sparse([query])[0]
    with configured_vector_index(settings) as index:
        return index.hybrid_search(dense, sparse, workspace=workspace, limit=limit)


def hit_as_json(hit: SearchHit) -> dict:
    return {
        "file": hit.file,
        "partition": hit.partition,
        "segment": hit.segment,
        "start": hit.start,
        "end": hit.end,
        "score": round(hit.score, 6),
        "text": hit.text,
    }
