"""Hub benchmark: verified load latency from a warm cache, and verified download throughput.

    .venv/bin/python -m benchmarks.hub        # writes benchmarks/results/hub.json

A 4-layer, d_model 512 model (~13M parameters, ~50 MB of weights) is trained for one
step, published to a local Hub-API server (tests/hub_server, in its own process), then,
each comparison interleaved round by round (the machine is shared), medians reported:
- load latency from a warm cache: `zoo.load` (manifest revalidated with the server by a
  HEAD request; or pinned to the commit: no request), config and weights checked against
  the manifest, safetensors header checked, model built) versus `safetensors.torch.load_file`
  of the same cached file, alone and followed by a sha256 of it ("hashing included");
  target ≤ 1.2× the latter. zoo hashes each cached file once (when it is downloaded, or at
  its first load) and trusts that hash while the file's stat is unchanged (zoo/verified.py),
  so a warm load does not re-hash: the ratio compares one verified load with one hash+load;
- download throughput: `zoo.download` of every file of the run into an empty cache
  (parallel, every file hashed as it streams in, zoo/hub/stream_download.py) versus a plain
  serial `hf_hub_download` loop over the same files into another empty cache, which hashes
  nothing; target ≥ 1×.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.utils import disable_progress_bars
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import zoo  # noqa: E402
from benchmarks._provenance import measured_on  # noqa: E402
from checkpoints_manifest import atomic_write_json, read_manifest, sha256_file  # noqa: E402
from hub_server import HubServer, pointed_at  # noqa: E402
from training import load_spec, train_zoo  # noqa: E402

SPEC = """
name = "bench"
seeds = [0]
[data]
corpus = "stories"
corpus_seed = 0
n_docs = 200
vocab_size = 2000
n_ctx = 64
[sizes]
4l = { n_layers = 4, d_model = 512, n_heads = 8, d_head = 64, d_mlp = 2048 }
[families]
gelu = ["4l"]
[training]
steps = 1
batch_size = 4
micro_batch_size = 4
[checkpoints]
log_until = 1
every = 1
"""
LOAD_ROUNDS = 15
DOWNLOAD_ROUNDS = 5


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int, before: Callable[[], None] = lambda: None
                 ) -> dict[str, float]:
    """Median seconds of each of `fns`, run in turn in every round (so contention hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            before()
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(ts) for name, ts in times.items()}


@contextmanager
def _server_process(root: Path) -> Iterator[HubServer]:
    """The test server in its own process, so it does not share this one's GIL with the client."""
    code = ("import sys, time; from pathlib import Path; from hub_server import serve\n"
            "with serve(Path(sys.argv[1])) as s:\n    print(s.endpoint, s.token, flush=True)\n    time.sleep(3600)")
    child = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    try:
        endpoint, token = child.stdout.readline().split()
        yield HubServer(endpoint, token, root, None)  # type: ignore[arg-type]  # no store: another process has it
    finally:
        child.kill()
        child.wait()


def _fresh_cache(tmp: Path, name: str) -> None:
    constants.HF_HUB_CACHE = str(tmp / name)


def main() -> dict:
    disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bench.toml").write_text(SPEC)
        train_zoo(load_spec(tmp / "bench.toml"), tmp / "out", progress=False)
        run_dir = tmp / "out" / "bench" / "runs" / "gelu-4l-seed0"
        manifest = read_manifest(run_dir)
        with _server_process(tmp / "server") as server, pointed_at(server):
            zoo.publish(run_dir, org="bench")
            where = dict(seed=0, zoo="bench", org="bench")

            # Load latency, warm cache.
            _fresh_cache(tmp, "cache-load")
            loaded = zoo.load("gelu-4l", step=1, **where)
            weights = hf_hub_download("bench/bench-gelu-4l-seed0", "checkpoints/step00000001/model.safetensors",
                                      revision=loaded.commit)
            load = _interleaved({
                "zoo.load_warm_cache_verified": lambda: zoo.load("gelu-4l", step=1, **where),
                "zoo.load_warm_cache_verified_pinned_commit": lambda: zoo.load("gelu-4l", step=1,
                                                                               revision=loaded.commit, **where),
                "safetensors_load_file": lambda: load_file(weights),
                "safetensors_load_file_plus_sha256": lambda: (load_file(weights), sha256_file(weights)),
            }, LOAD_ROUNDS)

            # Download throughput, empty caches, the same files.
            files = ["config.json", *sorted(p for p in manifest.files if p.startswith("checkpoints/"))]
            total = sum(manifest.files[p].size for p in files)
            caches = iter(range(1000))

            def plain_loop() -> None:
                for path in files:
                    hf_hub_download("bench/bench-gelu-4l-seed0", path, revision=loaded.commit)

            download = _interleaved({"hf_hub_download_loop_s": plain_loop,
                                     "zoo.download_verified_s": lambda: zoo.download("gelu-4l", **where)},
                                    DOWNLOAD_ROUNDS, before=lambda: _fresh_cache(tmp, f"cache-{next(caches)}"))
    ours, hashed = load["zoo.load_warm_cache_verified"], load["safetensors_load_file_plus_sha256"]
    plain_dl, ours_dl = download["hf_hub_download_loop_s"], download["zoo.download_verified_s"]
    result = {
        "model": "gelu-4l d_model=512 (13M params)",
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (shared)",
        "rounds": {"load": LOAD_ROUNDS, "download": DOWNLOAD_ROUNDS, "statistic": "median, interleaved"},
        "weights_bytes": manifest.files["checkpoints/step00000001/model.safetensors"].size,
        "load_latency_s": load,
        "load_hashing": "once per cache entry (at download or first load), trusted while the file's stat "
                        "(size, inode, device, mtime_ns, ctime_ns) is unchanged; not re-hashed per load",
        "load_ratio_vs_load_file": ours / load["safetensors_load_file"],
        "load_ratio_vs_load_file_plus_sha256": ours / hashed,
        "load_ratio_pinned_vs_load_file_plus_sha256": load["zoo.load_warm_cache_verified_pinned_commit"] / hashed,
        "download": {"files": len(files), "bytes": total, **download,
                     "zoo_MB_s": total / ours_dl / 1e6, "loop_MB_s": total / plain_dl / 1e6},
        "download_throughput_ratio": plain_dl / ours_dl,
        "targets": {"load_ratio_vs_load_file_plus_sha256": "<= 1.2", "download_throughput_ratio": ">= 1"},
        "measured": measured_on("cpu"),
    }
    out = ROOT / "benchmarks" / "results" / "hub.json"
    atomic_write_json(out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
