"""The deterministic training loop: spec → data → model → optimizer → steps → checkpoints.

Every update is a pure function of (state, batch): the batch of step s comes from
the stateless order, micro-batch gradients are summed in a fixed tree, and no
random number is drawn after initialization. So a run resumed from any
checkpoint ends bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack, nullcontext
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_index import StepIndex, TokenStore, build_step_index, prepare_store, step_sample_ids
from training import checkpoint, evaluate
from training.determinism import generator_for, set_determinism
from training.distributed import SINGLE, DataParallel
from training.errors import StorageError, describe_os_error
from training.model import ModelConfig, Transformer, init_weights, lm_loss
from training.numerics import CURRENT, Numerics, numerics_record, resolve_numerics
from training.run_dir import CONFIG_NAME, open_run
from training.schedule import checkpoint_steps, learning_rate
from training.spec import RunSpec, ZooSpec

@dataclass(frozen=True)
class StepStats:
    loss: float
    grad_norm: float


@dataclass(frozen=True)
class RunResult:
    run: str
    path: Path
    final_step: int
    final_loss: float | None
    trained_steps: int  # updates done by this call (0 when the run was already complete)


def zoo_dir(out: Path, spec: ZooSpec) -> Path:
    return Path(out) / spec.name


def run_path(out: Path, spec: ZooSpec, run: RunSpec) -> Path:
    return zoo_dir(out, spec) / "runs" / run.name


def model_config(spec: ZooSpec, run: RunSpec, d_vocab: int) -> ModelConfig:
    s = run.size
    return ModelConfig(n_layers=s.n_layers, d_model=s.d_model, n_heads=s.n_heads, d_head=s.d_head, d_mlp=s.d_mlp,
                       n_ctx=spec.data.n_ctx, d_vocab=d_vocab, architecture=run.architecture)


def numerics_of(spec: ZooSpec) -> Numerics:
    """The numerics path a run of `spec` trains on: the spec's (resolved by `train_run` for a run
    directory that records one), else CURRENT."""
    return spec.numerics if spec.numerics is not None else CURRENT


def run_config(spec: ZooSpec, run: RunSpec, cfg: ModelConfig) -> dict[str, Any]:
    """config.json: the model in TransformerLens fields plus everything that determines the run.

    The numerics path is recorded unless it is LEGACY (no table: the config of every run trained
    before the table existed)."""
    full = spec.to_dict()
    record = numerics_record(numerics_of(spec))
    return {
        "model": cfg.to_dict(),
        "run": {"zoo": spec.name, "model": run.model, "name": run.name, "architecture": run.architecture,
                "init_seed": run.init_seed, "data_seed": run.data_seed},
        **{key: full[key] for key in ("data", "training", "optimizer", "checkpoints")},
        **({"numerics": record} if record is not None else {}),
    }


def build_model(spec: ZooSpec, run: RunSpec, d_vocab: int, device: str) -> Transformer:
    """Initialized on the CPU from the init generator, so step-0 weights are the same on every device."""
    model = Transformer(model_config(spec, run, d_vocab))
    init_weights(model, generator_for(run.init_seed, "init"))
    return model.to(device)


def build_optimizer(model: Transformer, spec: ZooSpec, device: str) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only. The implementation is fixed per device (determinism)."""
    opt = spec.optimizer
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, foreach=device == "cuda",
    )
    checkpoint.init_optimizer_state(model, optimizer)
    return optimizer


def batch_tokens(store: TokenStore, step: int, *, batch_size: int, data_seed: int, device: str) -> torch.Tensor:
    """The [B, n_ctx+1] tokens of update `step`, by the stateless order."""
    ids = step_sample_ids(step, batch_size=batch_size, n_samples=store.n_samples, data_seed=data_seed)
    return torch.from_numpy(np.ascontiguousarray(store.samples(ids), dtype=np.int64)).to(device)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, *, lr: float,
               micro_batch_size: int, grad_clip: float, precision: str = "float32",
               numerics: Numerics = CURRENT, parallel: DataParallel = SINGLE) -> StepStats:
    """One optimizer update on the global batch `tokens` [B, n_ctx+1].

    Each micro-batch's gradient is computed on its own and the gradients are summed in a
    fixed pairwise tree (across `parallel`'s ranks too), so the update is bitwise the same
    for any processes × accumulation split.
    """
    params = [p for p in model.parameters()]
    autocast = (torch.autocast(tokens.device.type, dtype=torch.bfloat16) if precision == "bfloat16"
                else nullcontext())
    items = []  # per micro-batch: its gradients, then its loss
    for micro in parallel.shard(tokens, micro_batch_size).split(micro_batch_size):
        with autocast:
            loss = lm_loss(model(micro[:, :-1]), micro[:, 1:])
        items.append([*torch.autograd.grad(loss, params), loss.detach().float()])
    n_micro = len(items) * parallel.world_size
    *mean_grads, mean_loss = parallel.tree_sum(items)
    if n_micro > 1:  # dividing by 1 is exact: skip the copies
        mean_grads = [g / n_micro for g in mean_grads]
        mean_loss = mean_loss / n_micro
    for param, grad in zip(params, mean_grads):
        param.grad = grad
    # torch's own clipping: the norm of per-tensor norms, then one in-place scale; fused on CUDA.
    foreach = tokens.device.type == "cuda"
    grad_norm = (torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=foreach) if grad_clip > 0
                 else torch.nn.utils.get_total_norm(mean_grads, foreach=foreach))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss_value, norm_value = torch.stack([mean_loss, grad_norm]).tolist()  # one device sync, not two
    return StepStats(loss=loss_value, grad_norm=norm_value)


def run_steps(spec: ZooSpec, run: RunSpec, store: TokenStore | None, model: Transformer,
              optimizer: torch.optim.Optimizer, *, start: int, stop: int, device: str,
              parallel: DataParallel = SINGLE, batches: Callable[[int], torch.Tensor] | None = None,
              ) -> Iterator[tuple[checkpoint.LoopState, StepStats]]:
    """Updates start+1 … stop of `run`, from the state after `start` updates; yields after each.

    The one loop that training, resume and replay all go through. `batches(step)`, when given,
    supplies the [B, n_ctx+1] tokens of an update instead of the stateless order over `store`:
    replay reads them from the published step index, and its callbacks may change them.
    """
    total = spec.training.steps
    tokens_per_step = spec.training.batch_size * spec.data.n_ctx
    for step in range(start + 1, stop + 1):
        lr = learning_rate(spec.optimizer, step, total)
        tokens = batches(step) if batches is not None else batch_tokens(
            store, step, batch_size=spec.training.batch_size, data_seed=run.data_seed, device=device)
        stats = train_step(model, optimizer, tokens, lr=lr, micro_batch_size=spec.training.micro_batch_size,
                           grad_clip=spec.optimizer.grad_clip, precision=spec.training.precision,
                           numerics=numerics_of(spec), parallel=parallel)
        yield checkpoint.LoopState(step=step, tokens_seen=step * tokens_per_step, lr=lr), stats


def loss_record(loop: checkpoint.LoopState, stats: StepStats) -> dict[str, Any]:
    """One line of the loss log."""
    return {"step": loop.step, "loss": stats.loss, "lr": loop.lr, "grad_norm": stats.grad_norm,
            "tokens": loop.tokens_seen}


def train_run(spec: ZooSpec, run: RunSpec, store: TokenStore, out: Path, *, resume: bool = False,
              device: str = "cpu", progress: bool = True, parallel: DataParallel = SINGLE,
              evaluate_held_out: bool = True) -> RunResult:
    """Train one run to the spec's last step, checkpointing on the dense schedule.

    Under data parallel every rank trains; only rank 0 opens (locks) the run directory and
    writes checkpoints, the others start from the checkpoint it names. When the store holds
    documents out, rank 0 stores their loss with every checkpoint (`evaluate_held_out=False`
    skips it: the training bits are the same either way).
    """
    set_determinism(device, spec.training.cpu_threads)
    total = spec.training.steps
    path = run_path(out, spec, run)
    spec = dataclasses.replace(spec, numerics=resolve_numerics(spec.numerics, path / CONFIG_NAME))
    model = build_model(spec, run, store.vocab_size, device)
    optimizer = build_optimizer(model, spec, device)
    schedule = set(checkpoint_steps(spec.checkpoints, total))
    held_out = evaluate.held_out_rows(store, device) if evaluate_held_out and parallel.is_writer else None

    def snapshot(loop: checkpoint.LoopState, records: list[dict[str, Any]]) -> checkpoint.Snapshot:
        evaluation = evaluate.evaluation(model, held_out, loop.step, precision=spec.training.precision,
                                         micro_batch_size=spec.training.micro_batch_size)
        return checkpoint.capture(model, optimizer, loop, records, evaluation)

    with ExitStack() as stack:
        rd = None
        if parallel.is_writer:
            rd = parallel.on_writer_failure(lambda: stack.enter_context(open_run(
                path, run=run.full_name, config=run_config(spec, run, model.cfg),
                dataset_fingerprint=store.fingerprint, device=device, resume=resume, final_step=total)))
        latest = parallel.broadcast_step(rd.latest_step if rd is not None else None)
        if latest is None:
            loop = checkpoint.LoopState(step=0, tokens_seen=0, lr=0.0)
            if rd is not None:
                rd.commit_checkpoint(snapshot(loop, []))
        else:
            loop = checkpoint.read(path, latest, model, optimizer)
        start = loop.step
        pending: list[dict[str, Any]] = []
        stats: StepStats | None = None
        bar = tqdm(total=total, initial=start, desc=run.name, unit="step",
                   disable=not progress or rd is None, leave=False)
        began = time.perf_counter()
        for loop, stats in run_steps(spec, run, store, model, optimizer, start=start, stop=total, device=device,
                                     parallel=parallel):
            pending.append(loss_record(loop, stats))
            if loop.step in schedule and rd is not None:
                rd.commit_checkpoint(snapshot(loop, pending))
                pending = []
            bar.update(1)
            if loop.step % 10 == 0 or loop.step == total:
                rate = (loop.step - start) * spec.training.batch_size * spec.data.n_ctx / (
                    time.perf_counter() - began)
                bar.set_postfix(loss=f"{stats.loss:.3f}", tok_s=f"{rate:,.0f}")
        bar.close()
        return RunResult(run.name, path, total, stats.loss if stats else None, total - start)


def index_path(zoo: Path, data_seed: int) -> Path:
    """Where the materialized step index of `data_seed` lives inside a zoo directory."""
    return Path(zoo) / "index" / f"data{data_seed}"


def prepare_step_index(spec: ZooSpec, store: TokenStore, zoo: Path, data_seed: int, *,
                       progress: bool) -> StepIndex:
    """The step index for `data_seed` (built once): which samples every update of such a run used."""
    path = index_path(zoo, data_seed)
    if path.exists():
        return StepIndex.open(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return build_step_index(store, path, data_seed=data_seed, batch_size=spec.training.batch_size,
                            n_steps=spec.training.steps, progress=progress)


def train_zoo(spec: ZooSpec, out: Path, *, runs: str | None = None, resume: bool = False, device: str = "cpu",
              progress: bool = True, evaluate_held_out: bool = True, data_workers: int = 1) -> list[RunResult]:
    """Prepare the zoo's dataset (tokenized by `data_workers` processes) and step indexes once, then train every
    selected run in order."""
    selected = spec.runs(runs)
    try:
        store = prepare_store(spec.data, zoo_dir(out, spec) / "data", workers=data_workers, progress=progress)
        for data_seed in sorted({run.data_seed for run in selected}):
            prepare_step_index(spec, store, zoo_dir(out, spec), data_seed, progress=progress)
    except OSError as e:  # a store or index is built in a temp dir: nothing half-built is left
        raise StorageError(f"cannot prepare the dataset of zoo {spec.name!r} in {zoo_dir(out, spec)}: "
                           f"{describe_os_error(e)}; free space or make it writable, then rerun") from e
    return [train_run(spec, run, store, out, resume=resume, device=device, progress=progress,
                      evaluate_held_out=evaluate_held_out) for run in selected]
