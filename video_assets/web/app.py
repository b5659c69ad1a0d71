"""The web app: search page, video page, JSON API (OpenAPI at /docs) and media with Range requests.

Lookups live in `video_assets.store.catalog` and `video_assets.search`; this module only routes,
checks the token and renders. Every text from a video reaches the page through Jinja2 autoescaping.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from video_assets.search import MAX_LIMIT, SearchError, hit_as_json, search
from video_assets.settings import Settings
from video_assets.store.catalog import Catalog, NotFound, check_partition, file_in_video
from video_assets.store.held_index import HeldIndex
from video_assets.store.layout import DataLayout
from video_assets.store.registry import VideoRegistry
from video_assets.store.vector_access import configured_vector_index
from video_assets.store.vector_index import VectorIndexError
from video_assets.timecodes import clock

HERE = Path(__file__).parent
TOKEN_ENV = "VIDEO_ASSETS_API_TOKEN"
TOKEN_COOKIE = "video_assets_token"
WORKSPACE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

Workspace = Annotated[
    str | None,
    Query(pattern=WORKSPACE_PATTERN, description="workspace (default VIDEO_ASSETS_WORKSPACE)"),
]


def create_app(settings: Settings | None = None, *, token: str | None = None) -> FastAPI:
    """The app for one data root. `token` (default VIDEO_ASSETS_API_TOKEN): required on every route."""
    settings = settings or Settings.from_env()
    token = token if token is not None else os.environ.get(TOKEN_ENV, "")
    layout = DataLayout(settings.home_dir)
    uploads = settings.uploads_location
    bucket_root = None if "://" in uploads else Path(uploads).expanduser().resolve()
    catalog = Catalog(layout, VideoRegistry(layout), bucket_root)
    held = HeldIndex(
        lambda: configured_vector_index(settings), idle_seconds=settings.web_index_idle, wanted=_waiting(settings)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        held.close()

    app = FastAPI(
        title="video-assets",
        description="Find the moment in a video by what was said or shown, and play it.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.held = held
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["clock"] = lambda s: clock(s) if s is not None else ""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def require_token(request: Request, call_next):  # noqa: ANN001, ANN202
        if not token:
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given.encode(), token.encode()) and request.method == "GET":
            # Once in a link: kept as a cookie, and dropped from the address (and from logs and history).
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if any(hmac.compare_digest(c.encode(), token.encode()) for c in (bearer, cookie) if c):
            return await call_next(request)
        return JSONResponse(
            {"detail": f"a token is required: Authorization: Bearer <{TOKEN_ENV}>, or ?token= once in the browser"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def scope(workspace: str | None) -> str:
        return workspace or settings.workspace

    def run_search(q: str, workspace: str, limit: int) -> list:
        try:
            return search(q, workspace=workspace, limit=limit, settings=settings, held=held)
        except SearchError as exc:
            raise HTTPException(422, str(exc)) from None
        except VectorIndexError as exc:
            raise HTTPException(503, str(exc)) from None

    def video_or_404(partition: str, workspace: str) -> dict[str, Any]:
        try:
            return catalog.video(partition, workspace)
        except NotFound:
            raise HTTPException(404, f"no video {partition!r} in workspace {workspace!r}") from None

    # -- JSON API ---------------------------------------------------------------------------------

    @app.get("/api/search", tags=["api"], summary="hits for a query: the objects of `video-assets search --json`")
    def api_search(
        q: Annotated[str, Query(min_length=1, max_length=1000, description="what was said or shown")],
        workspace: Workspace = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    ) -> list[dict[str, Any]]:
        return [hit_as_json(h) for h in run_search(q, scope(workspace), limit)]

    @app.get("/api/videos", tags=["api"], summary="the videos of a workspace")
    def api_videos(workspace: Workspace = None) -> list[dict[str, Any]]:
        return catalog.videos(scope(workspace))

    @app.get("/api/videos/{partition}", tags=["api"], summary="one video: description and segments")
    def api_video(partition: str, workspace: Workspace = None) -> dict[str, Any]:
        return video_or_404(partition, scope(workspace))

    # -- media -------------------------------------------------------------------------------------

    @app.get("/media/{partition}/original", tags=["media"], summary="the upload itself (Range requests)")
    def media_original(partition: str, workspace: Workspace = None) -> FileResponse:
        try:
            check_partition(partition, scope(workspace))
        except NotFound:
            raise HTTPException(404, "not found") from None
        path = catalog.original(partition)
        if path is None:
            raise HTTPException(404, "the upload is no longer there: play the segment clips")
        return FileResponse(path, media_type=_media_type(path))

    @app.get("/media/{partition}/file/{path:path}", tags=["media"], summary="a frame or clip of a video")
    def media_file(partition: str, path: str, workspace: Workspace = None) -> FileResponse:
        try:
            check_partition(partition, scope(workspace))
            found = file_in_video(layout, partition, path)
        except NotFound:
            raise HTTPException(404, "not found") from None
        return FileResponse(found, media_type=_media_type(found))

    # -- pages -------------------------------------------------------------------------------------

    def media_url(partition: str, workspace: str, relative: str | None = None) -> str:
        tail = "original" if relative is None else f"file/{quote(relative)}"
        return f"/media/{quote(partition)}/{tail}?workspace={quote(workspace)}"

    def player_for(video: dict[str, Any], segment: dict[str, Any] | None) -> dict[str, Any]:
        """Which file plays a segment and where in it: the upload at the segment's start, else its clip."""
        start = segment["start"] if segment else 0.0
        if video["original"] or segment is None or not segment.get("clip"):
            return {"src": media_url(video["partition"], video["workspace"]), "seek": start}
        return {"src": media_url(video["partition"], video["workspace"], segment["clip"]), "seek": 0.0}

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        base = {"workspaces": _workspaces(catalog, settings.workspace), "media_url": media_url}
        return templates.TemplateResponse(request, name, base | context, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(request: Request, q: str = "", workspace: str = "", limit: str = "20") -> HTMLResponse:
        workspace = workspace or settings.workspace
        context: dict[str, Any] = {"q": q, "workspace": workspace, "groups": [], "error": None, "searched": False}
        try:
            if not re.match(WORKSPACE_PATTERN, workspace):
                raise HTTPException(422, f"workspace {workspace!r}: 1-63 characters of a-z, 0-9, '_' or '-'")
            if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
                raise HTTPException(422, f"limit must be a whole number between 1 and {MAX_LIMIT}, got {limit!r}")
            if q.strip():
                context["searched"] = True
                context["groups"] = grouped(run_search(q, workspace, int(limit)), workspace, q)
        except HTTPException as exc:
            context["error"] = exc.detail
            return page(request, "search.html", context, exc.status_code)
        return page(request, "search.html", context)

    def grouped(hits: list, workspace: str, q: str) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        words = _query_words(q)
        for hit in hits:
            group = groups.get(hit.partition)
            if group is None:
                try:
                    video = catalog.video(hit.partition, workspace)
                except NotFound:  # indexed, but its files are not (yet, or any more) there: nothing to play
                    video = {"partition": hit.partition, "file": hit.file, "duration": None, "segments": []}
                group = groups[hit.partition] = {"video": video, "hits": []}
            video = group["video"]
            in_range = hit.segment is not None and hit.segment < len(video["segments"])
            segment = video["segments"][hit.segment] if in_range else None
            group["hits"].append(
                {
                    "hit": hit,
                    "segment": segment,
                    "player": player_for(video, segment) if "original" in video else None,
                    "parts": _highlighted(hit.text, words),
                }
            )
        for group in groups.values():
            # The moments first; a hit on the whole video's description (it names no moment) after them.
            group["hits"].sort(key=lambda item: item["segment"] is None)
        return list(groups.values())

    @app.get("/videos/{partition}", response_class=HTMLResponse, include_in_schema=False)
    def video_page(request: Request, partition: str, workspace: str = "", t: float = 0.0) -> HTMLResponse:
        workspace = workspace or settings.workspace
        video = video_or_404(partition, workspace) if re.match(WORKSPACE_PATTERN, workspace) else None
        if video is None:
            raise HTTPException(404, "not found")
        dagster = f"{settings.dagster_url.rstrip('/')}/assets/segments?view=partitions&partition={quote(partition)}"
        segments = [{**s, "player": player_for(video, s)} for s in video["segments"]]
        first = player_for(video, None) if video["original"] else (segments[0]["player"] if segments else None)
        return page(
            request,
            "video.html",
            {"video": video, "segments": segments, "first": first, "dagster": dagster, "t": t, "workspace": workspace},
        )

    return app


_MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def _waiting(settings: Settings):  # noqa: ANN202
    """Whether another process waits for the embedded shard; never with a Qdrant server."""
    if settings.qdrant_url:
        return lambda: False
    from video_assets.store.qdrant_edge_index import someone_waits
    from video_assets.store.vector_migration import edge_shard_path

    shard = edge_shard_path(settings.vectors_path.expanduser().resolve(), settings.qdrant_collection)
    return lambda: someone_waits(shard)


def _media_type(path: Path) -> str:
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _workspaces(catalog: Catalog, default: str) -> list[str]:
    from video_assets.store.layout import split_partition_key

    found = {split_partition_key(k)[0] for k in catalog.registry.partition_keys()}
    return sorted(found | {default})


def _query_words(q: str) -> set[str]:
    return {w for w in re.findall(r"\w+", q.casefold()) if len(w) > 1}


def _highlighted(text: str, words: set[str]) -> list[tuple[str, bool]]:
    """`text` in pieces, each marked when it is a word of the query (or starts with one of 4+ letters)."""
    parts = []
    for piece in re.split(r"(\w+)", text):
        if not piece:
            continue
        folded = piece.casefold()
        match = folded in words or any(len(w) >= 4 and folded.startswith(w) for w in words)
        parts.append((piece, match))
    return parts
