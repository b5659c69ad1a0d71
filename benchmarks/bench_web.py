"""The search page's server under load (not a test): API latency, first paint, and sharing the shard.

    .venv/bin/python benchmarks/bench_web.py [--points 10000] [--queries 200] [--hold 3]

Builds an embedded index of `--points` generated segments (bench_graph's texts and embeddings, 4
workspaces) in a temporary data root, starts `video-assets serve` on a free loopback port and reports:

* `GET /api/search` p50/p95 over `--queries` queries, each including the query embedding, with the
  shard held open between requests (the server's way), and for comparison `search()` opening the
  shard per use (the CLI's way);
* the search page's first contentful paint in headless Chromium (`performance.getEntriesByType('paint')`);
* the worst wait of a search while another process holds the shard for `--hold` s (a writer), and
  how long that writer waited for the server to let go while searches kept coming.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_graph import WORKSPACES, build_index, vocabulary  # noqa: E402

from video_assets_tests.browser import BROWSER_ARGS, CHROMIUM  # noqa: E402

WARMUP = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(xs: list[float]) -> str:
    ms = np.array(xs) * 1000
    return f"p50 {np.percentile(ms, 50):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms  max {ms.max():7.1f} ms"


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "video_assets.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


HOLDER = """
import sys, time
from video_assets.settings import Settings
from video_assets.store.vector_access import configured_vector_index
started = time.monotonic()
with configured_vector_index(Settings.from_env()):
    print(f"{time.monotonic() - started:.3f}", flush=True)  # how long the writer waited for the shard
    time.sleep(float(sys.argv[1]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the simulated writer holds the shard")
    parser.add_argument("--workdir", type=Path, help="keep the index here, and reuse one built there before")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_web_"))
    env = os.environ | {
        "VIDEO_ASSETS_HOME": str(work / "data"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("QDRANT_URL", None)
    env.pop("VIDEO_ASSETS_API_TOKEN", None)
    os.environ.update({k: env[k] for k in ("VIDEO_ASSETS_HOME", "DAGSTER_HOME")})
    os.environ.pop("QDRANT_URL", None)

    from video_assets.search import search
    from video_assets.settings import Settings
    from video_assets.store.vector_access import configured_vector_index

    settings = Settings.from_env()
    rng = random.Random(7)
    clock = time.perf_counter()
    with configured_vector_index(settings) as index:
        if index.count() != args.points:
            _, built = build_index(index, args.points, rng)
            print(f"index: {built['points']} points ({built['model']}) built in {time.perf_counter() - clock:.1f} s")
        else:
            print(f"index: {index.count()} points, reused from {work}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    vocab = vocabulary()
    phrases = [" ".join(rng.choices(vocab, k=rng.randint(2, 6))) for _ in range(args.queries + WARMUP)]

    # Per-use opening (what the CLI does), in this process: the cost the server avoids.
    per_use = []
    for n, phrase in enumerate(phrases[: 50 + WARMUP]):
        t0 = time.perf_counter()
        search(phrase, workspace=WORKSPACES[n % 4], settings=settings)
        if n >= WARMUP:
            per_use.append(time.perf_counter() - t0)
    print(f"search() opening the shard per use ({len(per_use)} queries):  {stats(per_use)}")

    # The same with the shard held open, in this process: the query embedding and the engine apart.
    from video_assets.models.embedder import load_embedder

    embedder = load_embedder(settings.embedding_model)
    embed_t, engine_t = [], []
    with configured_vector_index(settings) as index:
        for n, phrase in enumerate(phrases[: 100 + WARMUP]):
            t0 = time.perf_counter()
            dense, sparse = embedder.embed_query(phrase).tolist(), embedder.sparse([phrase])[0]
            t1 = time.perf_counter()
            index.hybrid_search(
                dense, sparse, workspace=WORKSPACES[n % 4], limit=10, min_score=embedder.relevance_floor
            )
            if n >= WARMUP:
                embed_t.append(t1 - t0)
                engine_t.append(time.perf_counter() - t1)
    print(f"in process, shard open ({len(embed_t)} queries): query embedding {stats(embed_t)}")
    print(f"                                    engine          {stats(engine_t)}")

    port = free_port()
    server = start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=180) as client:
            api = []
            for n, phrase in enumerate(phrases):
                t0 = time.perf_counter()
                response = client.get("/api/search", params={"q": phrase, "workspace": WORKSPACES[n % 4]})
                elapsed = time.perf_counter() - t0
                assert response.status_code == 200, response.text
                if n >= WARMUP:
                    api.append(elapsed)
            print(f"GET /api/search, shard held between requests ({len(api)} queries):  {stats(api)}")
            print(
                f"  queries over 50 ms: {sum(t > 0.05 for t in api)} of {len(api)}; "
                f"load average now {os.getloadavg()[0]:.1f}"
            )

            paint = first_paint(f"{base}/?q={phrases[0].replace(' ', '+')}&workspace={WORKSPACES[0]}")
            if paint:
                print(
                    f"search page with results: first paint {paint['first-paint']:.0f} ms, first contentful paint "
                    f"{paint['first-contentful-paint']:.0f} ms ({paint['hits']} hits shown)"
                )

            # A writer holds the shard: searches wait for it, then go on.
            time.sleep(settings.web_index_idle + 0.5)  # the server has let go
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(args.hold)], env=env, stdout=subprocess.PIPE, text=True
            )
            holder.stdout.readline()  # it holds the shard now
            waits, clock = [], time.monotonic()
            while time.monotonic() - clock < args.hold + 1.0:
                t0 = time.perf_counter()
                assert client.get("/api/search", params={"q": "volcano", "workspace": "alpha"}).status_code == 200
                waits.append(time.perf_counter() - t0)
                time.sleep(0.1)
            holder.wait()
            print(
                f"searches while a writer held the shard {args.hold:g} s: worst wait {max(waits):.2f} s, "
                f"then {stats(waits[1:])}"
            )

            # Searches keep coming (every 20 ms, 2 threads); a writer asks for the shard.
            stop = threading.Event()

            def stream() -> None:
                while not stop.is_set():
                    client.get("/api/search", params={"q": "bicycle chain", "workspace": "beta"})
                    time.sleep(0.02)

            streams = [threading.Thread(target=stream) for _ in range(2)]
            for thread in streams:
                thread.start()
            time.sleep(1.0)
            writer = subprocess.run([sys.executable, "-c", HOLDER, "0"], env=env, capture_output=True, text=True)
            stop.set()
            for thread in streams:
                thread.join()
            print(f"a writer's wait for the shard under a steady stream of searches: {float(writer.stdout):.2f} s")
    finally:
        server.terminate()
        server.wait(timeout=20)


def first_paint(url: str) -> dict[str, float] | None:
    if not Path(CHROMIUM).exists():
        print("no /usr/bin/chromium: first paint not measured")
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            browser.new_page().goto(url)  # a warm-up load: a new browser profile's first page is not the page's cost
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function("performance.getEntriesByType('paint').length >= 2", timeout=10_000)
            entries = page.evaluate("performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
            hits = page.locator("a.hit").count()
            return dict(entries) | {"hits": hits}
        finally:
            browser.close()


if __name__ == "__main__":
    main()
