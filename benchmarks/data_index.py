"""Benchmark the data index against the targets of issue #2, side by side in one run.

    .venv/bin/python benchmarks/data_index.py

Measures: step -> batch ids latency (stateless function; zarr index in RAM and
read from disk), document -> steps latency on a store of 1M documents,
tokenize+pack throughput against `tokenizers`' own `encode_batch` on the same
text, and the bytes of the step index per step. Prints a table and writes
benchmarks/results/data_index.json.
"""

import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

# This file is named data_index.py: its own folder first on sys.path would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import tokenizers  # noqa: E402

from benchmarks._provenance import measured_on  # noqa: E402
from checkpoints_manifest import atomic_write_json  # noqa: E402
from data_index import (  # noqa: E402
    StepIndex,
    build_step_index,
    build_token_store,
    builtin_corpus,
    order,
    step_sample_ids,
    train_bpe_tokenizer,
)

RESULTS = Path(__file__).resolve().parent / "results" / "data_index.json"
BATCH, STEPS, SEED = 32, 20_000, 0  # the toy zoo's batch size
N_CTX, VOCAB = 64, 1024  # the toy zoo's store


def _per_call_us(fn, args: list) -> float:
    t = time.perf_counter()
    for a in args:
        fn(a)
    return (time.perf_counter() - t) / len(args) * 1e6


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def throughput(tmp: Path) -> dict:
    """tokens/s of build_token_store (tokenize + pack + write + hash) vs bare encode_batch, best of 3."""
    texts = list(builtin_corpus("stories", n_docs=20_000)["text"])
    tokenizer = train_bpe_tokenizer(texts[:4000], VOCAB)
    dataset = datasets.Dataset.from_dict({"text": texts})
    n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
    ours, theirs = [], []
    for i in range(3):
        t = time.perf_counter()
        tokenizer.encode_batch(texts)
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_token_store(dataset, tokenizer, tmp / f"throughput{i}", n_ctx=N_CTX, progress=False)
        ours.append(time.perf_counter() - t)
    ours_tps, theirs_tps = n_tokens / min(ours), n_tokens / min(theirs)
    return {
        "documents": len(texts),
        "tokens": n_tokens,
        "build_token_store_tokens_per_s": round(ours_tps),
        "encode_batch_tokens_per_s": round(theirs_tps),
        "ratio": round(ours_tps / theirs_tps, 3),
        "target_ratio": 0.8,
    }


def _seen_entries(index: StepIndex) -> int:
    return int(index._arrays["seen_ptr"].rows(index.n_docs, index.n_docs + 1)[0])


def _raw_bytes(index: StepIndex) -> int:
    """Bytes of the index's arrays uncompressed: batches (u4), seen_ptr (i8), seen_pos (u4)."""
    return index.n_steps * index.batch_size * 4 + (index.n_docs + 1) * 8 + _seen_entries(index) * 4


def step_latency(tmp: Path) -> dict:
    """µs per step -> batch ids: stateless (sequential and cold random steps) and from the zarr index."""
    texts = builtin_corpus("stories", n_docs=4000)["text"]
    store = build_token_store(
        datasets.Dataset.from_dict({"text": texts}),
        train_bpe_tokenizer(texts, VOCAB),
        tmp / "toy",
        n_ctx=N_CTX,
        progress=False,
    )
    index = build_step_index(store, tmp / "toy_index", data_seed=SEED, batch_size=BATCH, n_steps=STEPS, progress=False)
    rng = random.Random(0)
    random_steps = [rng.randrange(1, STEPS + 1) for _ in range(2000)]
    n = store.n_samples

    def stateless(step):
        return step_sample_ids(step, batch_size=BATCH, n_samples=n, data_seed=SEED)

    order._block.cache_clear()
    sequential = _per_call_us(stateless, list(range(1, STEPS + 1)))
    far_steps = [rng.randrange(1, 10**9) for _ in range(2000)]  # never the same block twice: no memo hits
    cold = _per_call_us(stateless, far_steps)
    in_ram = _per_call_us(index.batch_ids, random_steps)  # the chunks read once, then kept decoded
    from_disk = _per_call_us(lambda s: StepIndex.open(index.path).batch_ids(s), random_steps[:300])
    samples_us = _per_call_us(store.samples, [stateless(s) for s in random_steps])
    return {
        "store": {"documents": store.n_docs, "samples": n, "n_ctx": N_CTX, "batch_size": BATCH, "steps": STEPS},
        "stateless_sequential_us": round(sequential, 2),
        "stateless_cold_random_step_us": round(cold, 2),
        "zarr_index_in_ram_us": round(in_ram, 2),
        "zarr_index_from_disk_us": round(from_disk, 2),
        "store_samples_us": round(samples_us, 2),
        "index_bytes_per_step": round(_dir_bytes(index.path) / STEPS, 1),
        "index_uncompressed_bytes_per_step": round(_raw_bytes(index) / STEPS, 1),
        "target_stateless_us": 20,
        "target_zarr_index_us": 1000,
    }


def where_seen_latency(tmp: Path) -> dict:
    """µs per document -> (step, row) lookup on a real store of 1M short documents."""
    n_docs, n_ctx, batch_size, n_steps = 1_000_000, 255, 64, 2000
    texts = [str(i) for i in range(n_docs)]
    tokenizer = train_bpe_tokenizer(texts[:10_000], 300)
    t = time.perf_counter()
    store = build_token_store(
        datasets.Dataset.from_dict({"text": texts}), tokenizer, tmp / "big", n_ctx=n_ctx, progress=False
    )
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    index = build_step_index(
        store, tmp / "big_index", data_seed=SEED, batch_size=batch_size, n_steps=n_steps, progress=False
    )
    index_s = time.perf_counter() - t
    rng = random.Random(1)
    docs = [rng.randrange(n_docs) for _ in range(5000)]
    in_ram = _per_call_us(index.where_seen, docs)
    from_disk = _per_call_us(lambda d: StepIndex.open(index.path).where_seen(d), docs[:300])
    return {
        "documents": n_docs,
        "samples": store.n_samples,
        "steps": n_steps,
        "batch_size": batch_size,
        "reverse_map_entries": _seen_entries(index),
        "store_build_s": round(build_s, 2),
        "index_build_s": round(index_s, 2),
        "where_seen_in_ram_us": round(in_ram, 2),
        "where_seen_from_disk_us": round(from_disk, 2),
        "index_bytes_per_step": round(_dir_bytes(index.path) / n_steps, 1),
        "target_us": 1000,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "numpy": np.__version__,
                "tokenizers": tokenizers.__version__,
            },
            "step_to_batch": step_latency(tmp),
            "doc_to_steps_1M_docs": where_seen_latency(tmp),
            "tokenize_pack_throughput": throughput(tmp),
        }
        results["measured"] = measured_on("cpu")
    s, w, th = results["step_to_batch"], results["doc_to_steps_1M_docs"], results["tokenize_pack_throughput"]
    rows = [
        ("step -> ids, stateless, sequential steps", f"{s['stateless_sequential_us']:.1f} µs", "<= 20 µs"),
        ("step -> ids, stateless, cold random step", f"{s['stateless_cold_random_step_us']:.1f} µs", "(memo miss)"),
        ("step -> ids, zarr index (chunks decoded)", f"{s['zarr_index_in_ram_us']:.1f} µs", "<= 1 ms"),
        ("step -> ids, zarr index (opened, read)", f"{s['zarr_index_from_disk_us']:.1f} µs", "<= 1 ms"),
        ("ids -> tokens, store.samples(B=32)", f"{s['store_samples_us']:.1f} µs", "<< 1 ms"),
        ("doc -> steps, 1M docs (index open)", f"{w['where_seen_in_ram_us']:.1f} µs", "<= 1 ms"),
        ("doc -> steps, 1M docs (opened, read)", f"{w['where_seen_from_disk_us']:.1f} µs", "<= 1 ms"),
        ("tokenize+pack tokens/s (ours)", f"{th['build_token_store_tokens_per_s']:,}", ""),
        ("encode_batch tokens/s (tokenizers)", f"{th['encode_batch_tokens_per_s']:,}", ""),
        ("ratio ours / encode_batch", f"{th['ratio']:.2f}", ">= 0.8"),
        (
            "index bytes per step, toy (B=32)",
            f"{s['index_bytes_per_step']:.0f} B on disk",
            f"{s['index_uncompressed_bytes_per_step']:.0f} B raw",
        ),
        ("index bytes per step, 1M docs (B=64)", f"{w['index_bytes_per_step']:.0f} B on disk", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>18}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>18}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
