"""Nearest-neighbour libraries for similar-case search: hnswlib vs faiss-cpu vs usearch.

    nice -n 19 python bench/similar_index.py [--n 100000] [--dim 512] [--queries 1000] [--k 5] [--threads 2]

Random unit vectors (cosine = inner product, as ``medsight index`` stores L2-normalised
embeddings); for each library: build time, mean query time (one query at a time, as
``predict --similar`` asks), and recall@k against the exact neighbours (brute force).
Libraries not installed are skipped. Prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = []
    for start in range(0, len(queries), 256):
        sims = queries[start:start + 256] @ data.T
        out.append(np.argsort(-sims, axis=1)[:, :k])
    return np.concatenate(out)


def hnswlib_index(data: np.ndarray, threads: int):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), ef_construction=200, M=16)
    index.set_num_threads(threads)
    index.add_items(data, np.arange(len(data)))
    index.set_ef(64)
    return lambda q, k: index.knn_query(q, k=k)[0]


def faiss_index(data: np.ndarray, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.add(data)
    index.hnsw.efSearch = 64
    return lambda q, k: index.search(q, k)[1]


def faiss_flat(data: np.ndarray, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    return lambda q, k: index.search(q, k)[1]


def usearch_index(data: np.ndarray, threads: int):
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=200,
                  expansion_search=64)
    index.add(np.arange(len(data)), data, threads=threads)
    return lambda q, k: index.search(q, k, threads=1).keys


LIBRARIES = {"hnswlib (HNSW)": hnswlib_index, "faiss-cpu (HNSW)": faiss_index, "usearch (HNSW)": usearch_index,
             "faiss-cpu (flat, exact)": faiss_flat}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    data, queries = unit(rng, args.n, args.dim), unit(rng, args.queries, args.dim)
    truth = exact(data, queries, args.k)
    rows = []
    print(f"{args.n} x {args.dim} random unit vectors, {args.queries} queries one at a time, recall@{args.k}",
          flush=True)
    print(f"{'library':26s} {'build s':>8s} {'query ms':>9s} {'recall':>7s}")
    for name, make in LIBRARIES.items():
        try:
            t0 = time.perf_counter()
            search = make(data, args.threads)
            build = time.perf_counter() - t0
        except ImportError:
            print(f"{name:26s} not installed", flush=True)
            continue
        found, t0 = [], time.perf_counter()
        for q in queries:
            found.append(np.asarray(search(q[None], args.k)).reshape(-1)[:args.k])
        query_ms = 1000 * (time.perf_counter() - t0) / len(queries)
        recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / args.k for f, t in zip(found, truth)]))
        rows.append({"library": name, "build_s": round(build, 2), "query_ms": round(query_ms, 3),
                     "recall": round(recall, 4)})
        print(f"{name:26s} {build:8.2f} {query_ms:9.3f} {recall:7.4f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
