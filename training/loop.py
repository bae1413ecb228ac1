"""The deterministic training loop: spec → data → model → optimizer → steps → checkpoints.

Every update is a pure function of (state, batch): the batch of step s comes from
the stateless order, micro-batch gradients are summed in a fixed tree, and no
random number is drawn after initialization. So a run resumed from any
checkpoint ends bitwise equal to an uninterrupted one.

Nothing in a step waits for the device: batches go up through pinned memory, the
loss and grad norm stay on the device until the loop fetches a checkpoint
interval's worth at once, and checkpoints are copied off asynchronously.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from contextlib import ExitStack, nullcontext
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from checkpoints_manifest import ManifestError, code_version, environment_record, read_manifest
from data_index import StepIndex, TokenStore, build_step_index, prepare_store, step_sample_ids
from training import checkpoint, evaluate
from training.determinism import generator_for, set_determinism
from training.distributed import SINGLE, DataParallel
from training.errors import StaleStepIndexError, StoppedError, StorageError, describe_os_error
from training.footprint import check_training
from training.model import ModelConfig, Transformer, init_weights, lm_loss
from training.numerics import CURRENT, Numerics, numerics_record, resolve_numerics
from training.reduce import PairwiseSum, canonical_layout
from training.resume import resume_point
from training.run_dir import CONFIG_NAME, RunDirectory, never_updated, open_run
from training.schedule import checkpoint_steps, learning_rate
from training.spec import RunSpec, ZooSpec

@dataclass(frozen=True)
class StepStats:
    """The loss and grad norm of one update, left on the device: reading one waits for the device,
    so the loop reads a whole checkpoint interval at once (`loss_records`)."""

    values: torch.Tensor  # float32 [loss, grad_norm]

    @property
    def loss(self) -> float:
        return self.values[0].item()

    @property
    def grad_norm(self) -> float:
        return self.values[1].item()


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
    """Initialized on the CPU from the init generator, so step-0 weights are the same on every device;
    attention kernel and compilation as the run's numerics path says."""
    numerics = numerics_of(spec)
    model = Transformer(model_config(spec, run, d_vocab), fused_attention=numerics.attention == "sdpa")
    init_weights(model, generator_for(run.init_seed, "init"))
    model = model.to(device)
    if numerics.compile:  # each block in place: one compilation serves every layer, names stay the eager ones
        for block in model.blocks:
            block.compile()
    return model


def build_optimizer(model: Transformer, spec: ZooSpec, device: str) -> torch.optim.AdamW:
    """AdamW; weight decay on the parameters the run's rule names (numerics.weight_decay). The
    implementation (numerics.adamw) too: both change the bits."""
    opt = spec.optimizer
    rule = numerics_of(spec).weight_decay
    decayed = {name: p.ndim >= 2 if rule == "ndim>=2" else name.rsplit(".", 1)[-1].startswith("W_")
               for name, p in model.named_parameters()}
    decay = [p for name, p in model.named_parameters() if decayed[name]]
    no_decay = [p for name, p in model.named_parameters() if not decayed[name]]
    kernel = {"fused": True} if numerics_of(spec).adamw == "fused" else {"foreach": device == "cuda"}
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, **kernel,
    )
    checkpoint.init_optimizer_state(model, optimizer)
    return optimizer


def batch_tokens(store: TokenStore, step: int, *, batch_size: int, data_seed: int, device: str) -> torch.Tensor:
    """The [B, n_ctx+1] tokens of update `step`, by the stateless order."""
    ids = step_sample_ids(step, batch_size=batch_size, n_samples=store.n_samples, data_seed=data_seed)
    return to_device(torch.from_numpy(np.ascontiguousarray(store.samples(ids), dtype=np.int64)), device)


def to_device(tokens: torch.Tensor, device: str) -> torch.Tensor:
    """`tokens` on `device`; to a GPU through pinned memory, so the host does not wait for the copy."""
    if torch.device(device).type == "cpu":
        return tokens
    return tokens.pin_memory().to(device, non_blocking=True)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, *, lr: float,
               micro_batch_size: int, grad_clip: float, precision: str = "float32",
               numerics: Numerics = CURRENT, parallel: DataParallel = SINGLE) -> StepStats:
    """One optimizer update on the global batch `tokens` [B, n_ctx+1].

    Each micro-batch's gradient is computed on its own and the gradients are summed in a
    fixed pairwise tree (across `parallel`'s ranks too), so the update is bitwise the same
    for any processes × accumulation split. The tree is summed as the micro-batches come
    (`PairwiseSum`): n of them hold at most log2(n) + 1 gradient sets, not n. Nothing here
    waits for the device; the returned stats stay on it.
    """
    params = [p for p in model.parameters()]
    autocast = (torch.autocast(tokens.device.type, dtype=torch.bfloat16) if precision == "bfloat16"
                else nullcontext())
    micros = parallel.shard(tokens, micro_batch_size).split(micro_batch_size)
    running = PairwiseSum()  # per micro-batch: its gradients, then its loss
    for micro in micros:
        with autocast:
            loss = lm_loss(model(micro[:, :-1]), micro[:, 1:])
        running.add([*canonical_layout(torch.autograd.grad(loss, params), numerics.grad_layout),
                     loss.detach().float()])
    n_micro = len(micros) * parallel.world_size
    *mean_grads, mean_loss = parallel.sum_over_ranks(running.total())
    if n_micro > 1:  # dividing by 1 is exact: skip it
        for total in (*mean_grads, mean_loss):
            total.div_(n_micro)  # in place: the same bits as `total / n_micro`, without a copy
    # torch's fused AdamW reads a gradient as if laid out like its parameter (on CPU, autograd's transposed
    # W_Q/W_K/W_V gradients would update the wrong elements), so its path hands over contiguous ones.
    contiguous = numerics.adamw == "fused"
    for param, grad in zip(params, mean_grads):
        param.grad = grad.contiguous() if contiguous else grad
    # torch's own clipping: the norm of per-tensor norms, then one in-place scale; fused on CUDA.
    foreach = tokens.device.type == "cuda"
    grad_norm = (torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=foreach) if grad_clip > 0
                 else torch.nn.utils.get_total_norm(mean_grads, foreach=foreach))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(torch.stack([mean_loss, grad_norm]))


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


def loss_records(updates: Sequence[tuple[checkpoint.LoopState, StepStats]]) -> list[dict[str, Any]]:
    """The loss-log lines of `updates`, their numbers fetched from the device in one copy."""
    values = torch.stack([stats.values for _, stats in updates]).tolist()
    return [{"step": loop.step, "loss": loss, "lr": loop.lr, "grad_norm": norm, "tokens": loop.tokens_seen}
            for (loop, _), (loss, norm) in zip(updates, values)]


def loss_record(loop: checkpoint.LoopState, stats: StepStats) -> dict[str, Any]:
    """One line of the loss log."""
    return loss_records([(loop, stats)])[0]


def check_run_fits(spec: ZooSpec, run: RunSpec, d_vocab: int, out: Path, device: str) -> None:
    """Refuse (ResourceError) a run whose model, training state and activations exceed `device`'s memory,
    or whose checkpoints still to be written exceed the free disk under `out`: before anything is built."""
    path = run_path(out, spec, run)
    try:
        done = read_manifest(path).checkpoints[-1:]
    except (FileNotFoundError, ManifestError):  # a new run (an unreadable manifest is refused by open_run)
        done = []
    remaining = [s for s in checkpoint_steps(spec.checkpoints, spec.training.steps) if not done or s > done[0]]
    check_training(model_config(spec, run, d_vocab), micro_batch_size=spec.training.micro_batch_size,
                   device=device, what=f"run {run.full_name}", checkpoints=len(remaining), out=path)


def train_run(spec: ZooSpec, run: RunSpec, store: TokenStore, out: Path, *, resume: bool = False,
              device: str = "cpu", progress: bool = True, parallel: DataParallel = SINGLE,
              allow_platform_change: bool = False, stop: Callable[[], bool] | None = None,
              evaluate_held_out: bool = True) -> RunResult:
    """Train one run to the spec's last step, checkpointing on the dense schedule.

    Under data parallel every rank trains; only rank 0 opens (locks) the run directory and
    writes checkpoints, the others start from the checkpoint it names. It starts from the
    latest checkpoint whose files verify (training/resume.py). A failure on any rank stops
    every rank at the next step. Resuming on another platform than the run's is refused
    unless `allow_platform_change` (then the manifest records the change). When `stop()`
    turns true, training stops at the next step boundary with StoppedError. When the store
    holds documents out, rank 0 stores their loss with every checkpoint (`evaluate_held_out=False`
    skips it: the training bits are the same either way).
    """
    check_run_fits(spec, run, store.vocab_size, out, device)
    set_determinism(device, spec.training.cpu_threads, spec.training.cpu_level)
    total = spec.training.steps
    path = run_path(out, spec, run)
    spec = dataclasses.replace(spec, numerics=resolve_numerics(spec.numerics, path / CONFIG_NAME))
    model = build_model(spec, run, store.vocab_size, device)
    optimizer = build_optimizer(model, spec, device)
    schedule = set(checkpoint_steps(spec.checkpoints, total))
    loss_log = numerics_of(spec).loss_log
    held_out = evaluate.held_out_rows(store, device) if evaluate_held_out and parallel.is_writer else None

    def snapshot(loop: checkpoint.LoopState, records: list[dict[str, Any]]) -> checkpoint.Snapshot:
        evaluation = evaluate.evaluation(model, held_out, loop.step, precision=spec.training.precision,
                                         micro_batch_size=spec.training.micro_batch_size)
        return checkpoint.capture(model, optimizer, loop, records, loss_log=loss_log, evaluation=evaluation)
    with ExitStack() as stack:
        rd, latest = None, None
        if parallel.is_writer:
            environment = environment_record(device, world_size=parallel.world_size, micro_batches_per_rank=(
                spec.training.batch_size // spec.training.micro_batch_size // parallel.world_size))

            def open_where_it_stopped() -> tuple[RunDirectory, int | None]:
                """The run directory and the checkpoint to go on from: its files verified, on this platform."""
                opened = stack.enter_context(open_run(
                    path, run=run.full_name, config=run_config(spec, run, model.cfg),
                    dataset_fingerprint=store.fingerprint, environment=environment, resume=resume,
                    final_step=total, allow_platform_change=allow_platform_change))
                step = resume_point(opened, resume=resume)
                if step != total:
                    opened.adopt_platform(environment, code_version(), allow_change=allow_platform_change)
                return opened, step

            rd, latest = parallel.on_writer_failure(open_where_it_stopped)
        latest = parallel.broadcast_step(latest)
        params = list(model.parameters())
        with parallel.stop_every_rank_on_failure(params):
            if latest is None:
                loop = checkpoint.LoopState(step=0, tokens_seen=0, lr=0.0)
                if rd is not None:
                    rd.commit_checkpoint(snapshot(loop, []))
            else:
                loop = checkpoint.read(path, latest, model, optimizer)
            start = loop.step
            pending: list[tuple[checkpoint.LoopState, StepStats]] = []  # the updates since the last checkpoint
            stats: StepStats | None = None
            bar = tqdm(total=total, initial=start, desc=run.name, unit="step",
                       disable=not progress or rd is None, leave=False)
            began = time.perf_counter()
            for loop, stats in run_steps(spec, run, store, model, optimizer, start=start, stop=total,
                                         device=device, parallel=parallel):
                pending.append((loop, stats))
                if loop.step in schedule:
                    if rd is not None:
                        records = loss_records(pending)  # the host waits for the device once per interval
                        rd.commit_checkpoint(snapshot(loop, records))
                        rate = (loop.step - start) * spec.training.batch_size * spec.data.n_ctx / (
                            time.perf_counter() - began)
                        bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", tok_s=f"{rate:,.0f}")
                    pending = []
                bar.update(1)
                if stop is not None and stop() and loop.step < total:
                    raise StoppedError(f"run {run.full_name} stopped after step {loop.step} as asked; its checkpoints "
                                       f"up to the last scheduled one are valid: resume goes on from there")
            bar.close()
            if rd is not None:
                rd.flush()  # the last checkpoint is on disk: a failure to write it stops every rank too
            parallel.check_in(params)
        return RunResult(run.name, path, total, stats.loss if stats else None, total - start)


def index_path(zoo: Path, data_seed: int) -> Path:
    """Where the materialized step index of `data_seed` lives inside a zoo directory."""
    return Path(zoo) / "index" / f"data{data_seed}"


def prepare_step_index(spec: ZooSpec, store: TokenStore, zoo: Path, data_seed: int, *,
                       progress: bool) -> StepIndex:
    """The step index for `data_seed`: which samples every update of such a run used.

    An existing index is used when it is of this batch size, step count and store; another one
    (left by an earlier spec) is rebuilt, unless runs of the zoo trained with it still need it:
    then StaleStepIndexError names them.
    """
    path = index_path(zoo, data_seed)
    batch_size, n_steps = spec.training.batch_size, spec.training.steps
    if (path / "index.json").is_file():
        index = StepIndex.open(path)
        if (index.batch_size, index.n_steps, index.data_seed, index.store_fingerprint) == (
                batch_size, n_steps, data_seed, store.fingerprint):
            return index
        if users := runs_of_another_schedule(zoo, data_seed, batch_size, n_steps):
            raise StaleStepIndexError(
                f"{path} is the step index of batch size {index.batch_size} x {index.n_steps} steps, with which "
                f"{', '.join(users)} trained; spec {spec.name!r} asks for batch size {batch_size} x {n_steps} "
                f"steps. Train it into another --out, or delete those runs first")
        shutil.rmtree(path)  # derived data, rebuilt below: a kill in between leaves no index, not a wrong one
    path.parent.mkdir(parents=True, exist_ok=True)
    return build_step_index(store, path, data_seed=data_seed, batch_size=batch_size, n_steps=n_steps,
                            progress=progress)


def check_step_index(zoo: Path, index: StepIndex, store_fingerprint: str) -> None:
    """Refuse a step index that is not the one the zoo's trained runs of its data seed used
    (StaleStepIndexError), so that nothing prints or publishes samples training never used."""
    users = runs_of_another_schedule(zoo, index.data_seed, index.batch_size, index.n_steps)
    if users or index.store_fingerprint != store_fingerprint:
        trained = f"runs {', '.join(users)} trained with another batch size or step count" if users else \
            f"the token store in {zoo / 'data'} is another one"
        raise StaleStepIndexError(
            f"{index.path} (batch size {index.batch_size} x {index.n_steps} steps) is stale: {trained}. "
            f"Rebuild it by training the zoo again: zoo train SPEC --out {zoo.parent} --resume")


def runs_of_another_schedule(zoo: Path, data_seed: int, batch_size: int, n_steps: int) -> list[str]:
    """The runs of zoo directory `zoo` with data seed `data_seed` that trained with another batch size
    or step count: a step index of (batch_size, n_steps) gives the wrong samples for them. A run that
    never completed an update used no sample: it starts again with the spec (see open_run)."""
    found = []
    for config_path in sorted((Path(zoo) / "runs").glob(f"*/{CONFIG_NAME}")):
        try:
            config = json.loads(config_path.read_text())
            seed, schedule = config["run"]["data_seed"], (config["training"]["batch_size"], config["training"]["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a run's config: training refuses that directory with its own error
        if seed == data_seed and schedule != (batch_size, n_steps) and not never_updated(config_path.parent):
            found.append(config_path.parent.name)
    return found


def train_zoo(spec: ZooSpec, out: Path, *, runs: str | None = None, resume: bool = False, device: str = "cpu",
              progress: bool = True, allow_platform_change: bool = False, evaluate_held_out: bool = True,
              data_workers: int = 1) -> list[RunResult]:
    """Prepare the zoo's dataset (tokenized by `data_workers` processes) and step indexes once, then train every
    selected run in order."""
    selected = spec.runs(runs)
    for run in selected:  # before the data is prepared; train_run checks again with the tokenizer's vocabulary
        check_run_fits(spec, run, spec.data.vocab_size, out, device)
    try:
        store = prepare_store(spec.data, zoo_dir(out, spec) / "data", workers=data_workers, progress=progress)
        for data_seed in sorted({run.data_seed for run in selected}):
            prepare_step_index(spec, store, zoo_dir(out, spec), data_seed, progress=progress)
    except OSError as e:  # a store or index is built in a temp dir: nothing half-built is left
        raise StorageError(f"cannot prepare the dataset of zoo {spec.name!r} in {zoo_dir(out, spec)}: "
                           f"{describe_os_error(e)}; free space or make it writable, then rerun") from e
    return [train_run(spec, run, store, out, resume=resume, device=device, progress=progress,
                      allow_platform_change=allow_platform_change, evaluate_held_out=evaluate_held_out)
            for run in selected]
