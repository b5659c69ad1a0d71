"""`video-assets`: ingest videos through the Dagster instance, see their state, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from video_assets.settings import Settings


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = argparse.ArgumentParser(prog="video-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="put videos into the upload bucket and materialize their assets")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument(
        "--workspace", "-w", default=None, help="workspace (default VIDEO_ASSETS_WORKSPACE or 'default')"
    )
    ingest.add_argument("--json", action="store_true", help="print one JSON object per file")

    status = commands.add_parser("status", help="models, device, settings and the state of every video")
    status.add_argument("--json", action="store_true")

    models = commands.add_parser("models", help="the model manager: each model's state, or load them all once")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    models_status = model_commands.add_parser(
        "status", help="per model: ready or not, name, folder, size on disk, device; and the GPUs"
    )
    models_status.add_argument("--json", action="store_true")
    models_warm = model_commands.add_parser(
        "warm",
        help="load every configured model once (and check the description endpoint if OPENAI_BASE_URL is set); "
        "report load time and memory growth; exit 1 naming any that failed",
    )
    models_warm.add_argument("--json", action="store_true")

    search = commands.add_parser("search", help="find moments by what was said or shown")
    search.add_argument("query")
    search.add_argument("--workspace", "-w", default=None)
    search.add_argument("--limit", "-n", type=int, default=10)
    search.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="dense cosine under which a hit is no answer (default VIDEO_SEARCH_MIN_SCORE, else the model's "
        "calibrated floor)",
    )
    search.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of {file, partition, segment, start, end, score, keyword_match, language, text}",
    )

    commands.add_parser(
        "reindex",
        help="rebuild the search index from the stored transcripts, captions and descriptions "
        "(after changing the embedding model; safe to run again)",
    )

    delete = commands.add_parser(
        "delete",
        help="drop an uploaded name (NAME) or a video (PARTITION); the video goes when no name is left",
    )
    delete.add_argument("target", help="a name as uploaded in the workspace, or a partition key <workspace>--<id>")
    delete.add_argument("--workspace", "-w", default=None)
    delete.add_argument("--force", action="store_true", help="delete the video even if other names reference it")
    delete.add_argument("--wait", action="store_true", help="wait for a run of the video in progress (else refuse)")
    delete.add_argument("--json", action="store_true")

    cleanup = commands.add_parser(
        "cleanup", help="run the orphan cleanup job through the Dagster instance (it also runs daily)"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="report what would be removed; change nothing")
    cleanup.add_argument("--json", action="store_true")

    workers = commands.add_parser(
        "workers",
        help="run one Celery worker per GPU for the instance's CeleryRunLauncher (deploy/dagster-celery.yaml), "
        "until SIGINT/SIGTERM",
    )
    workers.add_argument(
        "--devices",
        default=None,
        help="comma-separated device ids, one worker each (default: every visible GPU, else one CPU worker)",
    )
    workers.add_argument("--queue", default=None, help="the Celery queue to serve (default: gpu)")
    workers.add_argument(
        "--grace", type=float, default=60.0, help="seconds a stopping worker may finish its run before SIGKILL"
    )
    workers.add_argument(
        "--pool-limit",
        type=int,
        default=None,
        help="the 'gpu' pool's limit to set (default: the number of devices; with several GPU machines, the total)",
    )
    workers.add_argument("--loglevel", default="INFO", help="the Celery workers' log level")

    serve = commands.add_parser(
        "serve", help="the search page, video pages and JSON API (token: VIDEO_ASSETS_API_TOKEN, if set)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)

    demo = commands.add_parser("demo", help="make a sample talk with speech, ingest it and print what came out")
    demo.add_argument("--workspace", "-w", default=None)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"video-assets: {exc}", file=sys.stderr)
        return 2
    handler = {
        "ingest": _ingest,
        "status": _status,
        "models": _models,
        "search": _search,
        "reindex": _reindex,
        "delete": _delete,
        "cleanup": _cleanup,
        "demo": _demo,
        "workers": _workers,
        "serve": _serve,
    }[args.command]
    return handler(args, settings)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    return _ingest_and_report(args, settings)[0]


def _ingest_and_report(args: argparse.Namespace, settings: Settings) -> tuple[int, list]:
    from video_assets.defs.runner import dagster_instance, ingest_files

    workspace = args.workspace or settings.workspace
    instance = dagster_instance()
    # Said out loud, on stderr (stdout stays one line or JSON object per file): where this went.
    print(f"data root {settings.home_dir}, Dagster instance {os.environ['DAGSTER_HOME']}", file=sys.stderr)
    outcomes = ingest_files(args.paths, workspace=workspace, settings=settings, instance=instance)
    for outcome in outcomes:
        if args.json:
            print(json.dumps(vars(outcome)))
        else:
            print(_outcome_line(outcome, settings))
    failed = [o for o in outcomes if not o.ok]
    if failed and not args.json:
        print(f"{len(failed)} of {len(outcomes)} file(s) failed", file=sys.stderr)
    return (1 if failed else 0), outcomes


def _outcome_line(outcome, settings: Settings) -> str:  # noqa: ANN001
    if outcome.status == "failed":
        return f"FAILED     {outcome.message}"
    if outcome.status == "duplicate":
        return f"DUPLICATE  {outcome.path}  {outcome.partition_key}  ({outcome.message}; processed once)"
    summary = _video_summary(settings, outcome.partition_key)
    return (
        f"OK         {outcome.path}  {outcome.partition_key}  "
        f"{summary['segment_count']} segments, {summary['duration']:.1f} s, {summary['words']} words"
        f"  (run {outcome.run_id[:8]})"
    )


def _video_summary(settings: Settings, key: str) -> dict:
    from video_assets.store.atomic import read_json
    from video_assets.store.documents import assemble_document
    from video_assets.store.layout import DataLayout

    layout = DataLayout(settings.home_dir)
    document = assemble_document(layout, key)
    transcripts = read_json(layout.transcripts_file(key)) if layout.transcripts_file(key).exists() else {"segments": []}
    return {
        "segment_count": document["segment_count"],
        "duration": document["total_duration"],
        "words": sum(len(s["words"]) for s in transcripts["segments"]),
        "description": document["document_data"]["description"],
        "segments": [
            {**info, "index": int(i), "transcript": info.get("transcript", "")}
            for i, info in sorted(document["segments_info"].items(), key=lambda kv: int(kv[0]))
        ],
    }


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.search import hit_as_json, search
    from video_assets.store.vector_index import VectorIndexError
    from video_assets.timecodes import clock

    workspace = args.workspace or settings.workspace
    try:
        hits = search(args.query, workspace=workspace, limit=args.limit, min_score=args.min_score, settings=settings)
    except ValueError as exc:  # an empty query, a bad workspace or limit: the message names it
        print(f"video-assets search: {exc}", file=sys.stderr)
        return 2
    except VectorIndexError as exc:
        print(f"video-assets search: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([hit_as_json(h) for h in hits], indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print(f"nothing in workspace {workspace!r} matches {args.query!r}")
    for rank, hit in enumerate(hits, 1):
        where = "whole video" if hit.segment is None else f"{clock(hit.start)}-{clock(hit.end)} (segment {hit.segment})"
        why = "meaning + words" if hit.keyword_match else "meaning"
        print(f"{rank:2d}. {hit.file}  {where}  cosine {hit.score:.3f} ({why})  [{hit.partition}]")
        print(f"    {_shorten(hit.text, 160)}")
    return 0


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from video_assets.indexing import reindex
    from video_assets.models.embedder import load_embedder
    from video_assets.store.layout import DataLayout
    from video_assets.store.vector_access import configured_vector_index

    started = time.perf_counter()
    embedder = load_embedder(settings.embedding_model)
    with configured_vector_index(settings) as index:
        report = reindex(DataLayout(settings.home_dir), index, embedder)
    print(
        f"re-indexed {report.videos} video(s) from {settings.home_dir} with {embedder.name}: "
        f"{report.segment_points} segment and {report.description_points} description points "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for skipped in report.skipped:
        print(f"skipped {skipped}", file=sys.stderr)
    return 1 if report.skipped else 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.defs.deletion import delete
    from video_assets.defs.instance import dagster_instance

    instance = dagster_instance()
    report = delete(
        args.target,
        workspace=args.workspace or settings.workspace,
        force=args.force,
        wait=args.wait,
        settings=settings,
        instance=instance,
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.message)
        if report.names_dropped:
            print(f"names dropped: {', '.join(report.names_dropped)}; uploads removed: {len(report.uploads_removed)}")
    return 0 if report.ok else (2 if report.status == "not_found" else 1)


def _cleanup(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from video_assets.definitions import cleanup
    from video_assets.defs.instance import dagster_instance
    from video_assets.defs.runner import execute_here, step_output_metadata

    instance = dagster_instance()
    os.environ["VIDEO_ASSETS_HOME"] = str(settings.home_dir)  # the run reconstructs definitions from the environment
    run = execute_here(
        instance,
        dg.reconstructable(cleanup),
        {"ops": {"cleanup_orphans": {"config": {"dry_run": args.dry_run}}}},
    )
    if run.status != dg.DagsterRunStatus.SUCCESS:
        print(f"video-assets cleanup: run {run.run_id[:8]} failed: see its log in the Dagster UI", file=sys.stderr)
        return 1
    report = step_output_metadata(instance, run.run_id, "cleanup_orphans")["report"]
    if args.json:
        print(json.dumps(report | {"run_id": run.run_id}))
        return 0
    verb = "would delete" if report["dry_run"] else "deleted"
    print(
        f"{report['folders_scanned']} video folders scanned; {verb} {len(report['deleted'])} video(s), "
        f"{report['points_deleted']} points, {report['bytes_freed']} bytes; {len(report['kept'])} kept with a reason; "
        f"{len(report['skipped_in_progress'])} skipped (run in progress); {report['seconds']} s (run {run.run_id[:8]})"
    )
    for key in report["deleted"]:
        print(f"  {verb} {key}")
    for key, why in report["kept"].items():
        print(f"  kept {key}: {why}")
    for path in report["leftovers_removed"]:
        print(f"  {'would remove' if report['dry_run'] else 'removed'} {path}")
    return 0


def _workers(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.workers import DEFAULT_QUEUE, parse_devices, run_workers

    try:
        devices = parse_devices(args.devices)
    except ValueError as exc:
        print(f"video-assets workers: {exc}", file=sys.stderr)
        return 2
    os.environ["VIDEO_ASSETS_HOME"] = str(settings.home_dir)  # the runs read the data root from the environment
    return run_workers(
        devices, args.queue or DEFAULT_QUEUE, pool_limit=args.pool_limit, grace=args.grace, loglevel=args.loglevel
    )


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.defs.runner import dagster_instance, video_states
    from video_assets.models.manager import model_statuses, table

    statuses = model_statuses(settings, check_size=False)
    instance = dagster_instance()
    report = {
        "data_root": str(settings.home_dir),
        "uploads": settings.uploads_location,
        "dagster_home": os.environ["DAGSTER_HOME"],
        "models": {
            role: {
                "name": s.name,
                "path": s.path,
                "found": s.found,
                "device": s.device,
                "compute_type": s.compute_type,
            }
            for role, s in statuses.items()
        },
        "videos": video_states(settings, instance),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"data root     {report['data_root']}")
    print(f"uploads       {report['uploads']}")
    print(f"DAGSTER_HOME  {report['dagster_home']}")
    print()
    rows = [
        [role, m["name"], m["path"], "yes" if m["found"] else "NOT FOUND", m["device"], m["compute_type"]]
        for role, m in report["models"].items()
    ]
    for line in table(["model", "name", "path", "found", "device", "compute type"], rows):
        print(line)
    print()
    print(f"videos        {len(report['videos'])}")
    for video in report["videos"]:
        assets = ", ".join(f"{a}:{s}" for a, s in video["assets"].items())
        print(f"  {video['partition_key']}  {', '.join(video['files'])}  [{assets}]")
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.models import manager

    if args.models_command == "status":
        statuses = manager.model_statuses(settings)
        gpu = manager.gpu_report()
        if args.json:
            print(json.dumps({"models": {r: s.as_dict() for r, s in statuses.items()}, "gpu": gpu}, indent=2))
            return 0
        rows = [
            [
                role,
                "ready" if s.ready else "NOT READY",
                s.name,
                s.path,
                manager.human_bytes(s.size_bytes),
                s.device,
                s.compute_type,
            ]
            for role, s in statuses.items()
        ]
        for line in manager.table(["model", "state", "name", "path", "size", "device", "compute type"], rows):
            print(line)
        for s in statuses.values():
            if not s.ready:
                print(f"{s.role}: {s.error}")
        print()
        for line in manager.gpu_lines(gpu):
            print(line)
        return 0

    def progress(result: manager.WarmResult) -> None:
        if args.json:
            return
        state = "ok" if result.ok else "FAILED"
        # A not-found error already starts with the model's name.
        said = result.detail if result.detail.startswith(result.name) else f"{result.name}: {result.detail}"
        print(
            f"{result.role:<10}  {state:<6}  {result.seconds:6.2f} s  RSS {_mib(result.rss_growth):+8.1f} MiB  {said}",
            flush=True,
        )

    if not args.json:
        print(f"{'model':<10}  {'state':<6}  {'load':>8}  {'RSS growth':>16}  name: detail", flush=True)
    started = manager.rss_bytes()
    _, results = manager.warm(settings, on_result=progress)
    failed = [r for r in results if not r.ok]
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results], "ok": not failed}, indent=2))
    else:
        now = manager.rss_bytes()
        print(f"process RSS {_mib(now):.1f} MiB ({_mib(now - started):+.1f} MiB since warm began, imports included)")
    for result in failed:
        print(f"video-assets models warm: {result.role} model {result.name} failed: {result.detail}", file=sys.stderr)
    return 1 if failed else 0


def _mib(size: int) -> float:
    return size / 2**20


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from video_assets.web.app import TOKEN_ENV, create_app

    token = os.environ.get(TOKEN_ENV, "")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"video-assets serve: listening on {args.host} without {TOKEN_ENV}: anyone who reaches it can search")
    app = create_app(settings, token=token)
    print(f"video-assets: the search page is at http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from video_assets.samples import DEMO_SCENES, espeak_available, make_video
    from video_assets.timecodes import clock

    if not espeak_available():
        print("video-assets demo: espeak-ng is needed to speak the sample (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    sample = settings.home_dir / "samples" / "demo_talk.mp4"
    if not sample.exists():
        print(f"making a {sum(s.duration for s in DEMO_SCENES):.0f} s sample talk with speech: {sample}")
        make_video(sample, DEMO_SCENES, size=(640, 360))
    request = argparse.Namespace(paths=[sample], workspace=args.workspace, json=False)
    code, (outcome,) = _ingest_and_report(request, settings)
    if code:
        return code
    key = outcome.partition_key
    summary = _video_summary(settings, key)
    print(f"\n{key}: {summary['segment_count']} segments, {summary['duration']:.1f} s")
    for seg in summary["segments"]:
        frames = ", ".join(f"{t:g}" for t in seg["frame_times"])
        print(f"  [{clock(seg['start_time'])}-{clock(seg['end_time'])}] {seg['segment_name']}  frames at {frames} s")
        print(f"      said:  {seg['transcript'] or '(no speech)'}")
        print(f"      shown: {seg.get('caption') or '(no caption)'}")
    print(f"\ndescription: {summary['description'] or '(none)'}")
    query = "lava and rocks from a mountain"
    print(f'\nvideo-assets search "{query}":')
    _search(argparse.Namespace(query=query, workspace=args.workspace, limit=3, min_score=None, json=False), settings)
    print(f"\nSee the run in the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} make ui")
    return 0


def _quiet_libraries() -> None:
    """A person reads this output: no progress bars or preview notices from the libraries, but what
    video_assets itself reports (a migrated index, say) is shown."""
    import logging
    import warnings

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("video-assets: %(message)s"))
    ours = logging.getLogger("video_assets")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights ship in packages; never fetched at run time
    warnings.filterwarnings("ignore", message=".*(preview|beta).*", category=Warning)
    # dagster-celery's launcher registers its task again for every run it launches: Celery's notice of it
    # says nothing to a person (the task registered first is the same).
    warnings.filterwarnings("ignore", message="Task name '(execute|resume)_job' is already registered")


if __name__ == "__main__":
    sys.exit(main())
