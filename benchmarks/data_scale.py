"""Benchmark the data path at research scale: two synthetic corpora 10x apart, side by side in one run.

    .venv/bin/python -m benchmarks.data_scale --dir /scratch/zoo-bench         # 10M and 1M documents
    .venv/bin/python -m benchmarks.data_scale --dir /tmp/b --scale 0.01         # a smoke run (100k and 10k)

The corpus: made-up words of 1-4 syllables drawn with Zipf (s = 1.1) frequencies from a
50,000-word vocabulary, in documents whose lengths are log-normal (sigma 1.2, the shape of
web-text lengths) with a mean of 10 words, written as parquet files under --dir. At scale 1
the larger corpus has 10M documents and about 120M tokens (a BPE of 8,192 tokens trained on
a 200k-document sample), the smaller one 1M and 12M.

For each size, in a fresh process (so peak RSS is that size's alone): the store is built
from the parquet files on every core (`prepare_store(workers=cpu_count)`: tokenize, pack,
write) and timed against `tokenizers`' own `encode_batch` on the same texts and cores
(encode time only, reading excluded: the baseline is favoured); peak RSS of the builder and
of its worker processes; the step index of one epoch at batch 512 is built and timed; store
+ index bytes are compared with tokens x token dtype bytes. At the larger size: reverse
lookup (document -> every (step, row)) latency warm (index open, its files in the page
cache) and cold (index files evicted from the page cache with posix_fadvise, index opened
afresh each lookup), and step -> sample ids (stateless) for random and consecutive steps, at
the toy zoo's batch of 32 and at 512.
Writes benchmarks/results/data_scale.json. Fits in 4 GB of RAM and ~2 GB of disk at scale 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._provenance import measured_on
from checkpoints_manifest import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "data_scale.json"
DOCS = 10_000_000  # the larger corpus at scale 1; the smaller has a tenth
VOCAB_WORDS, ZIPF, MEAN_WORDS, SIGMA = 50_000, 1.1, 10.0, 1.2
BPE_VOCAB, BPE_SAMPLE = 8192, 200_000
N_CTX, BATCH = 1024, 512
FILE_DOCS = 1_000_000  # documents per parquet file
_ONSETS, _VOWELS = "bdfgklmnprstvz", "aeiou"


def words(rng: np.random.Generator) -> np.ndarray:
    """The made-up vocabulary: 1-4 syllables each, most frequent first."""
    syllables = np.array([o + v for o in _ONSETS for v in _VOWELS])
    lengths = rng.integers(1, 5, VOCAB_WORDS)
    return np.array(["".join(rng.choice(syllables, k)) for k in lengths])


def generate(folder: Path, n_docs: int, seed: int) -> list[Path]:
    """Parquet files of `n_docs` synthetic documents under `folder` (kept between runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == {"n_docs": n_docs, "seed": seed}:
        return sorted(folder.glob("*.parquet"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(seed)
    vocabulary = words(np.random.default_rng(0))
    ranks = np.arange(1, VOCAB_WORDS + 1, dtype=np.float64)
    p = ranks ** -ZIPF / (ranks ** -ZIPF).sum()
    mu = np.log(MEAN_WORDS) - SIGMA ** 2 / 2  # lognormal mean = exp(mu + sigma^2 / 2)
    files = []
    for k, start in enumerate(range(0, n_docs, FILE_DOCS)):
        count = min(FILE_DOCS, n_docs - start)
        lengths = np.maximum(1, np.rint(rng.lognormal(mu, SIGMA, count))).astype(np.int64)
        tokens = vocabulary[rng.choice(VOCAB_WORDS, size=int(lengths.sum()), p=p)]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        texts = [" ".join(tokens[a:b]) + "." for a, b in zip(bounds[:-1], bounds[1:])]
        path = folder / f"part-{k:05d}.parquet"
        pq.write_table(pa.table({"text": texts}), path, row_group_size=50_000)
        files.append(path)
    done.write_text(json.dumps({"n_docs": n_docs, "seed": seed}))
    return files


class _PeakRss:
    """Samples the resident memory of this process and of its worker processes (from /proc), keeping the peaks.

    getrusage's ru_maxrss is no use here: a process started by fork + exec reports its parent's
    peak from before the exec when that was higher."""

    def __init__(self) -> None:
        self.builder = self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.05):
            own = _rss_kb(me)
            children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == me]
            self.builder = max(self.builder, own)
            self.total = max(self.total, own + sum(_rss_kb(c) for c in children))


def _rss_kb(pid: int) -> int:
    try:
        line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1])
    except (OSError, StopIteration):
        return 0


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def build(files: list[str], tokenizer: str, out: str, workers: int) -> dict:
    """In a fresh process: the store and its one-epoch index, timed, with peak RSS; then encode_batch."""
    import datasets  # noqa: F401  imported before the clock starts: an import is not tokenizing
    import pyarrow.parquet as pq
    import torch  # noqa: F401  (datasets' streaming imports it when it is installed)
    import zarr  # noqa: F401
    from tokenizers import Tokenizer

    from data_index import DataSpec, build_step_index, prepare_store

    with _PeakRss() as rss:
        began = time.perf_counter()
        store = prepare_store(DataSpec(files=files, tokenizer_file=tokenizer, n_ctx=N_CTX), Path(out) / "data",
                              workers=workers, progress=False)
        store_s = time.perf_counter() - began
        steps = -(-store.n_samples // BATCH)  # one epoch
        began = time.perf_counter()
        index = build_step_index(store, Path(out) / "index", data_seed=0, batch_size=BATCH, n_steps=steps,
                                 progress=False)
        index_s = time.perf_counter() - began
    meta = json.loads((store.path / "store.json").read_text())
    encoder = Tokenizer.from_file(tokenizer)
    baseline_s = 0.0
    for f in files:  # the same texts, read as the store read them; only the encoding is timed
        for batch in pq.ParquetFile(f).iter_batches(batch_size=10_000, columns=["text"]):
            texts = batch.column(0).to_pylist()
            began = time.perf_counter()
            encoder.encode_batch(texts, add_special_tokens=False)
            baseline_s += time.perf_counter() - began
    return {"docs": store.n_docs, "tokens": meta["n_tokens"], "samples": store.n_samples,
            "token_dtype_bytes": np.dtype(meta["parts"]["tokens"]["dtype"]).itemsize, "steps": steps,
            "store_build_s": store_s, "index_build_s": index_s, "encode_batch_s": baseline_s,
            "peak_rss_builder_mb": rss.builder / 1024, "peak_rss_total_mb": rss.total / 1024, "workers": workers,
            "store_bytes": _bytes(store.path), "index_bytes": _bytes(index.path)}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _evict(paths) -> None:
    """Drop files from the page cache, so the next read comes from disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def lookups(out: Path, n_samples: int) -> dict:
    """Reverse lookup warm and cold, and step -> ids stateless, on the larger corpus's index."""
    from data_index import StepIndex, order, step_sample_ids

    path = out / "index"
    index = StepIndex.open(path)
    rng = np.random.default_rng(1)
    docs = rng.integers(0, index.n_docs, 3000).tolist()
    for d in docs[:200]:  # the files into the page cache
        index.where_seen(d)
    warm = []
    for d in docs:
        began = time.perf_counter()
        index.where_seen(d)
        warm.append(time.perf_counter() - began)
    files = [p for p in path.rglob("*") if p.is_file()]
    _evict(files)
    spread = np.linspace(0, index.n_docs - 1, 200).astype(np.int64).tolist()  # each in chunks never read since
    cold = []
    for d in spread:
        _evict([p for p in files if p.suffix == ".json"])
        began = time.perf_counter()
        StepIndex.open(path).where_seen(d)
        cold.append(time.perf_counter() - began)
    us = lambda xs, q: float(np.percentile(np.array(xs) * 1e6, q))  # noqa: E731
    out = {"where_seen_warm_median_us": us(warm, 50), "where_seen_warm_p99_us": us(warm, 99),
           "where_seen_cold_median_us": us(cold, 50), "where_seen_cold_p99_us": us(cold, 99)}
    for batch in (32, BATCH):  # the toy zoo's batch (the figure the README has kept) and this corpus's
        order._block.cache_clear()
        far = []
        for s in rng.integers(1, 10**9, 3000).tolist():  # far apart: never the memoized block
            began = time.perf_counter()
            step_sample_ids(s, batch_size=batch, n_samples=n_samples, data_seed=0)
            far.append(time.perf_counter() - began)
        began = time.perf_counter()
        for s in range(1, 3001):
            step_sample_ids(s, batch_size=batch, n_samples=n_samples, data_seed=0)
        out[f"step_ids_b{batch}_random_median_us"] = us(far, 50)
        out[f"step_ids_b{batch}_consecutive_mean_us"] = (time.perf_counter() - began) / 3000 * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where corpora, stores and indexes go (~2 GB)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (smoke: 0.01)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="tokenizer processes (all cores)")
    args = parser.parse_args()
    began = time.perf_counter()
    large = max(1000, int(DOCS * args.scale))
    sizes = {"small": large // 10, "large": large}
    corpora = {name: generate(args.dir / f"corpus-{n}", n, seed=7) for name, n in sizes.items()}
    tokenizer = args.dir / "tokenizer.json"
    generated_s = time.perf_counter() - began
    from data_index import train_bpe_tokenizer  # noqa: E402 (after the corpora: one import, for the BPE)
    import pyarrow.parquet as pq

    began = time.perf_counter()
    sample = pq.read_table(corpora["large"][0], columns=["text"]).column(0).to_pylist()[:BPE_SAMPLE]
    train_bpe_tokenizer(sample, BPE_VOCAB).save(str(tokenizer))
    bpe_s = time.perf_counter() - began
    results: dict = {"corpus": {"vocabulary_words": VOCAB_WORDS, "zipf": ZIPF, "mean_words": MEAN_WORDS,
                                "lognormal_sigma": SIGMA, "bpe_vocab": BPE_VOCAB, "n_ctx": N_CTX,
                                "batch_size": BATCH, "scale": args.scale},
                     "generate_s": generated_s, "bpe_train_s": bpe_s, "sizes": {}}
    for name, files in corpora.items():
        out = args.dir / f"built-{sizes[name]}"
        subprocess.run(["rm", "-rf", str(out), str(out.parent / f".{out.name}.build")], check=True)
        code = (f"import json, sys; from benchmarks.data_scale import build; "
                f"print(json.dumps(build({[str(f) for f in files]!r}, {str(tokenizer)!r}, {str(out)!r}, "
                f"{args.workers})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1])
        r = json.loads(done.stdout.strip().splitlines()[-1])
        raw = r["tokens"] * r["token_dtype_bytes"]
        r.update(tokens_per_s=r["tokens"] / r["store_build_s"], encode_batch_tokens_per_s=r["tokens"] / r[
            "encode_batch_s"], ratio_vs_encode_batch=r["encode_batch_s"] / r["store_build_s"],
            store_index_bytes_per_raw_token_byte=(r["store_bytes"] + r["index_bytes"]) / raw,
            index_docs_per_s=r["docs"] / r["index_build_s"])
        results["sizes"][name] = r
        if name == "large":
            results["lookups"] = lookups(out, r["samples"])
    small, large_r = results["sizes"]["small"], results["sizes"]["large"]
    results["rss_large_over_small"] = large_r["peak_rss_total_mb"] / small["peak_rss_total_mb"]
    results["total_s"] = time.perf_counter() - began + generated_s
    results["measured"] = measured_on("cpu", workers=args.workers, scale=args.scale)
    results["targets"] = {"ratio_vs_encode_batch": ">= 0.9", "rss_large_over_small": "<= 1.2",
                          "peak_rss_total_mb": "<= 2048 (builder + workers)",
                          "store_index_bytes_per_raw_token_byte": "<= 1.1", "where_seen_warm_us": "<= 1000",
                          "where_seen_cold_us": "<= 10000", "step_ids_b32_consecutive_mean_us": "<= 20"}
    for name, r in results["sizes"].items():
        print(f"{name}: {r['docs']:,} docs, {r['tokens']:,} tokens: ours {r['tokens_per_s']:,.0f} tok/s, "
              f"encode_batch {r['encode_batch_tokens_per_s']:,.0f} tok/s, ratio {r['ratio_vs_encode_batch']:.3f}; "
              f"peak RSS {r['peak_rss_total_mb']:.0f} MB with {r['workers']} workers (builder "
              f"{r['peak_rss_builder_mb']:.0f} MB); store+index {r['store_index_bytes_per_raw_token_byte']:.3f} x raw tokens; "
              f"index {r['index_build_s']:.1f} s ({r['index_docs_per_s']:,.0f} docs/s)")
    print(f"RSS large / small: {results['rss_large_over_small']:.3f}")
    print("lookups at the larger size: " + ", ".join(f"{k} {v:.1f}" for k, v in results["lookups"].items()))
    print(f"total {results['total_s']:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
