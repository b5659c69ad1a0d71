"""Qdrant Edge against qdrant-client local mode on the same synthetic index (not a test).

    .venv/bin/python benchmarks/bench_vector_index.py [--points 10000,100000] [--queries 200]
        [--skip-local-above N] [--workdir DIR]

Each size gets N points shaped like the pipeline's: a 384-dim unit vector, a keyword vector of about
20 token ids drawn from a Zipf-like vocabulary with BM25-saturated counts, 4 workspaces, written 50
points per partition through `replace_partition_points` as the embeddings step does. Reported per
engine: build time, p50/p95 of `hybrid_search` (limit 10) on an open index, and for the edge shard
the cost of opening it, which every use pays (`EdgeShard.load` alone, and open + one search + close).
Both engines then answer the same raw dense and keyword queries, and the largest score difference
between them is printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_assets.store.qdrant_client_index import ClientVectorIndex  # noqa: E402
from video_assets.store.qdrant_edge_index import EdgeVectorIndex  # noqa: E402
from video_assets.store.vector_index import DENSE, KEYWORDS, SEGMENT, IndexedText, VectorIndex  # noqa: E402

DIM = 384
WORKSPACES = [f"ws{i}" for i in range(4)]
PER_PARTITION = 50
VOCABULARY = 50_000
TOKENS_PER_POINT = 20
TF_SATURATION = 1.2
MODEL = "bench-model"
COLLECTION = "video_segments"


@dataclass
class Sparse:
    indices: list[int]
    values: list[float]


def zipf_tokens(rng: np.random.Generator, count: int) -> list[int]:
    """Distinct token ids, common ones far more often (ranks follow Zipf's law, shuffled into ids)."""
    ranks = set()
    while len(ranks) < count:
        ranks.update(int(r) for r in rng.zipf(1.3, size=count) if r <= VOCABULARY)
    return sorted(rank * 2654435761 % 2**31 for rank in list(ranks)[:count])


def sparse(rng: np.random.Generator, count: int) -> Sparse:
    indices = zipf_tokens(rng, count)
    tf = rng.choice([1, 1, 1, 1, 2, 2, 3], size=len(indices))
    return Sparse(indices, [float(c * (TF_SATURATION + 1) / (c + TF_SATURATION)) for c in tf])


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def partitions(n: int, seed: int) -> list[tuple[str, list[IndexedText]]]:
    rng = np.random.default_rng(seed)
    dense = unit_rows(rng, n)
    out = []
    for start in range(0, n, PER_PARTITION):
        video = start // PER_PARTITION
        workspace = WORKSPACES[video % len(WORKSPACES)]
        key = f"{workspace}/video{video:06d}.mp4"
        items = [
            IndexedText(
                index=i,
                text=f"segment {i} of video {video}",
                dense=dense[start + i].tolist(),
                sparse=sparse(rng, TOKENS_PER_POINT),
                payload={
                    "workspace": workspace,
                    "files": [f"video{video:06d}.mp4"],
                    "start": 30.0 * i,
                    "end": 30.0 * (i + 1),
                    "model": MODEL,
                    "language": "en",
                },
            )
            for i in range(min(PER_PARTITION, n - start))
        ]
        out.append((key, items))
    return out


def queries(count: int, seed: int) -> list[tuple[list[float], Sparse, str]]:
    rng = np.random.default_rng(seed + 1)
    return [
        (row.tolist(), sparse(rng, int(rng.integers(2, 6))), WORKSPACES[i % len(WORKSPACES)])
        for i, row in enumerate(unit_rows(rng, count))
    ]


def build(index: VectorIndex, data: list[tuple[str, list[IndexedText]]]) -> float:
    started = time.perf_counter()
    index.ensure_collection(DIM, MODEL)
    for key, items in data:
        index.replace_partition_points(key, items, kind=SEGMENT)
    return time.perf_counter() - started


def latencies(index: VectorIndex, qs: list[tuple[list[float], Sparse, str]]) -> tuple[float, float, list]:
    times, answers = [], []
    for dense, keywords, workspace in qs:
        started = time.perf_counter()
        hits = index.hybrid_search(dense, keywords, workspace=workspace, limit=10)
        times.append(time.perf_counter() - started)
        answers.append(hits)
    return percentile(times, 50), percentile(times, 95), answers


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000.0


def edge_raw(index: EdgeVectorIndex, dense: list[float], keywords: Sparse, workspace: str) -> tuple[dict, dict]:
    where = qe.Filter(must=[qe.FieldCondition(key="workspace", match=qe.MatchValue(workspace))])
    exact = qe.SearchParams(exact=True)
    d = index.shard.query(
        qe.QueryRequest(limit=40, query=qe.Query.Nearest(dense, using=DENSE), filter=where, params=exact)
    )
    s = index.shard.query(
        qe.QueryRequest(
            limit=40,
            query=qe.Query.Nearest(qe.SparseVector(keywords.indices, keywords.values), using=KEYWORDS),
            filter=where,
        )
    )
    return {str(p.id): p.score for p in d}, {str(p.id): p.score for p in s}


def local_raw(index: ClientVectorIndex, dense: list[float], keywords: Sparse, workspace: str) -> tuple[dict, dict]:
    where = models.Filter(must=[models.FieldCondition(key="workspace", match=models.MatchValue(value=workspace))])
    d = index.client.query_points(COLLECTION, query=dense, using=DENSE, query_filter=where, limit=40)
    s = index.client.query_points(
        COLLECTION,
        query=models.SparseVector(indices=keywords.indices, values=keywords.values),
        using=KEYWORDS,
        query_filter=where,
        limit=40,
    )
    return {str(p.id): p.score for p in d.points}, {str(p.id): p.score for p in s.points}


def max_diff(a: dict, b: dict) -> tuple[float, float, int, int]:
    """Largest score difference of the same point, and of the same rank (blind to how ties are ordered)."""
    common = set(a) & set(b)
    same_point = max((abs(a[k] - b[k]) for k in common), default=0.0)
    ranked = zip(sorted(a.values(), reverse=True), sorted(b.values(), reverse=True))
    same_rank = max((abs(x - y) for x, y in ranked), default=0.0)
    return same_point, same_rank, len(common), len(a)


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> None:
    data = partitions(n, args.seed)
    qs = queries(args.queries, args.seed)
    folder = workdir / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    shard_path = folder / "edge" / COLLECTION

    edge = EdgeVectorIndex(shard_path)
    edge_build = build(edge, data)
    edge.close()
    edge = EdgeVectorIndex(shard_path)  # searched as every use sees it: freshly loaded
    edge.hybrid_search(*qs[0][:2], workspace=qs[0][2])  # warm the page cache
    edge_p50, edge_p95, edge_answers = latencies(edge, qs)
    edge.close()

    loads = []
    for _ in range(args.opens):
        started = time.perf_counter()
        shard = qe.EdgeShard.load(str(shard_path))
        loads.append(time.perf_counter() - started)
        shard.close()
    per_use = []
    for dense, keywords, workspace in qs[: args.opens]:
        started = time.perf_counter()
        with EdgeVectorIndex(shard_path) as index:
            index.hybrid_search(dense, keywords, workspace=workspace, limit=10)
        per_use.append(time.perf_counter() - started)

    print(f"\n## {n:,} points ({len(data):,} partitions of {PER_PARTITION}, {len(WORKSPACES)} workspaces)")
    print(f"edge   build {edge_build:8.1f} s   hybrid_search p50 {edge_p50:6.2f} ms  p95 {edge_p95:6.2f} ms")
    print(
        f"edge   EdgeShard.load  median {statistics.median(loads) * 1000:7.1f} ms  max {max(loads) * 1000:7.1f} ms"
        f"   open+search+close median {statistics.median(per_use) * 1000:7.1f} ms  (n={args.opens})"
    )
    used = sum(f.stat().st_blocks * 512 for f in shard_path.rglob("*") if f.is_file())
    apparent = sum(f.stat().st_size for f in shard_path.rglob("*") if f.is_file())
    print(f"edge   shard on disk {used / 2**20:.1f} MiB used ({apparent / 2**20:.1f} MiB apparent, preallocated)")

    if args.skip_local_above is not None and n > args.skip_local_above:
        print(f"local  skipped (above --skip-local-above {args.skip_local_above:,})")
        return
    local = ClientVectorIndex(path=folder / "local", collection=COLLECTION)
    local_build = build(local, data)
    local.close()
    started = time.perf_counter()
    local = ClientVectorIndex(path=folder / "local", collection=COLLECTION)
    local_open = time.perf_counter() - started
    local_p50, local_p95, local_answers = latencies(local, qs)
    print(f"local  build {local_build:8.1f} s   hybrid_search p50 {local_p50:6.2f} ms  p95 {local_p95:6.2f} ms")
    print(f"local  open (QdrantClient(path=...)) {local_open * 1000:.0f} ms")

    edge = EdgeVectorIndex(shard_path)
    dense_stats, sparse_stats = [0.0, 0.0, 0, 0], [0.0, 0.0, 0, 0]
    for dense, keywords, workspace in qs:
        (ed, es), (ld, ls) = edge_raw(edge, dense, keywords, workspace), local_raw(local, dense, keywords, workspace)
        for stats, (a, b) in ((dense_stats, (ed, ld)), (sparse_stats, (es, ls))):
            point_diff, rank_diff, common, total = max_diff(a, b)
            stats[0], stats[1] = max(stats[0], point_diff), max(stats[1], rank_diff)
            stats[2], stats[3] = stats[2] + common, stats[3] + total
    edge.close()
    local.close()
    same_order = sum(
        [(h.partition, h.segment) for h in a] == [(h.partition, h.segment) for h in b]
        for a, b in zip(edge_answers, local_answers)
    )
    hit_diff = max(
        (abs(x.score - y.score) for a, b in zip(edge_answers, local_answers) for x, y in zip(a, b)), default=0.0
    )
    for name, (point_diff, rank_diff, common, total) in (("dense", dense_stats), ("keyword (IDF)", sparse_stats)):
        print(
            f"edge vs local, {name:13} top-40: max |Δscore| same point {point_diff:.2e}, same rank {rank_diff:.2e}; "
            f"{common}/{total} ids in both"
        )
    print(
        f"edge vs local, hybrid_search: identical hit lists for {same_order}/{len(qs)} queries "
        f"(tied keyword scores are ordered differently by the two engines), max |Δ hit score| at the same "
        f"position {hit_diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="10000,100000", help="comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--opens", type=int, default=20, help="shard loads and per-use searches timed")
    parser.add_argument("--skip-local-above", type=int, default=None, help="no local-mode run above this size")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_vector_index_"))
    engines = ", ".join(f"{name} {version(name)}" for name in ("qdrant-edge-py", "qdrant-client"))
    print(f"{engines}; {DIM}-dim vectors; {args.queries} queries per size; workdir {workdir}")
    try:
        for n in (int(p) for p in args.points.split(",")):
            run_size(n, args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
