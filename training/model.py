"""One small transformer, in TransformerLens's names, for the whole zoo.

Parameters and hook points are named as in TransformerLens (TL) so that
interpretability code written for TL runs on our models, and export to TL is a
rename-free copy. The operations follow TL's order too (LayerNorm written out,
attention through ``F.linear`` on rearranged weights, ``addmm`` in the MLP), so
a parity test against TL can be tight.

Three architectures: ``attn-only`` (no MLP), ``gelu`` (exact erf GELU) and
``solu`` (post = LN(pre * softmax(pre)) over d_mlp). Pre-LN, learned absolute
positions, causal attention scaled by 1/sqrt(d_head), written out as TL does or
(``fused_attention``) through ``F.scaled_dot_product_attention``.

Weights are never drawn at construction: ``Transformer`` allocates, and
``init_weights`` fills every parameter from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHITECTURES = ("attn-only", "gelu", "solu")
_ACT_FN = {"attn-only": None, "gelu": "gelu", "solu": "solu_ln"}  # TL's spelling
_SIZES = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab")
_LN_EPS = 1e-5

HookFn = Callable[[Tensor, "HookPoint"], Tensor | None]


class ModelConfigError(ValueError):
    """A model config that cannot describe a zoo model."""


class ModelInputError(ValueError):
    """Tokens or targets of the wrong shape for this model."""


class UnknownHookError(ValueError):
    """A hook name that is not a hook point of this model."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one zoo model; ``architecture`` decides the MLP (TL's act_fn, attn_only).

    ``d_mlp`` is unused by ``attn-only`` and may be 0 there. ``init_range`` is
    the std of the normal draw for every ``W_*`` matrix (TL's "gpt2" init,
    without GPT-2's 1/sqrt(2 * n_layers) rescaling of W_O and W_out).
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_vocab: int
    architecture: str
    init_range: float = 0.02

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ModelConfigError(
                f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}"
            )
        for name in _SIZES:
            value = getattr(self, name)
            smallest = 0 if (name == "d_mlp" and not self.has_mlp) else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
                raise ModelConfigError(
                    f"{name} must be an integer >= {smallest} for {self.architecture}, got {value!r}"
                )
        if not isinstance(self.init_range, (int, float)) or not self.init_range > 0:
            raise ModelConfigError(f"init_range must be a positive number, got {self.init_range!r}")

    @property
    def has_mlp(self) -> bool:
        """Whether blocks have an MLP (and ln2): every architecture but attn-only."""
        return self.architecture != "attn-only"

    @property
    def act_fn(self) -> str | None:
        """TL's act_fn for this architecture: None, "gelu" or "solu_ln"."""
        return _ACT_FN[self.architecture]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in TL's HookedTransformerConfig field names, plus ``architecture``."""
        return {
            **{name: getattr(self, name) for name in _SIZES},
            "d_vocab_out": self.d_vocab,
            "architecture": self.architecture,
            "act_fn": self.act_fn,
            "attn_only": not self.has_mlp,
            "normalization_type": "LN",
            "positional_embedding_type": "standard",
            "eps": _LN_EPS,
            "init_mode": "gpt2",
            "initializer_range": self.init_range,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Read a dict written by ``to_dict``; any key that disagrees with the config it implies is refused."""
        missing = [k for k in (*_SIZES, "architecture") if k not in d]
        if missing:
            raise ModelConfigError(f"model config lacks {', '.join(missing)}; write it with ModelConfig.to_dict")
        fields = {k: d[k] for k in (*_SIZES, "architecture")}
        if "initializer_range" in d:
            fields["init_range"] = d["initializer_range"]
        cfg = cls(**fields)
        implied = cfg.to_dict()
        unknown = sorted(set(d) - set(implied))
        if unknown:
            raise ModelConfigError(f"unknown model config keys {unknown}; known: {sorted(implied)}")
        wrong = [f"{k}={d[k]!r} (expected {implied[k]!r})" for k in d if d[k] != implied[k]]
        if wrong:
            raise ModelConfigError(f"model config contradicts a {cfg.architecture} zoo model: {', '.join(wrong)}")
        return cfg

    def n_params(self) -> int:
        """Number of parameters of ``Transformer(self)``, counted without building it."""
        d, h, dh, m = self.d_model, self.n_heads, self.d_head, self.d_mlp
        attn = 3 * h * d * dh + 3 * h * dh + h * dh * d + d
        mlp = 2 * d + d * m + m + m * d + d if self.has_mlp else 0
        solu_ln = 2 * m if self.architecture == "solu" else 0
        per_block = 2 * d + attn + mlp + solu_ln
        embed_unembed = self.d_vocab * d + self.n_ctx * d + d * self.d_vocab + self.d_vocab
        return embed_unembed + self.n_layers * per_block + 2 * d


def _param(*shape: int) -> nn.Parameter:
    # Allocated, not drawn: init_weights (or load_state_dict) fills it, so
    # construction never touches the global RNG.
    return nn.Parameter(torch.empty(*shape))


def _addmm(bias: Tensor, weight: Tensor, x: Tensor) -> Tensor:
    """x @ weight + bias over the last axis, as TL's batch_addmm."""
    out = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight)
    return out.view(*x.shape[:-1], weight.shape[-1])


class HookPoint(nn.Module):
    """Identity on an activation; a named place where hooks read or replace it."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # set by Transformer to the module path, e.g. "blocks.0.attn.hook_q"

    def forward(self, x: Tensor) -> Tensor:
        return x

    def __call__(self, x: Tensor) -> Tensor:
        # An idle hook point skips nn.Module's call machinery (~1.5 us each,
        # 40+ per forward); forward hooks on the point itself still run.
        return super().__call__(x) if self._forward_hooks else x


class LayerNorm(nn.Module):
    """TL's LayerNorm, written out: centre, divide by sqrt(var + eps), scale and shift."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.w = _param(length)
        self.b = _param(length)
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + _LN_EPS).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


class Attention(nn.Module):
    """Causal multi-head attention; per-head weights as TL stores them.

    ``fused``: softmax(q k^T / sqrt(d_head)) v through ``F.scaled_dot_product_attention``,
    which never materializes the [batch, head, q, k] scores. While a hook reads or edits
    the scores or the pattern, the explicit path computes them; the two paths agree to
    float rounding, not bit for bit, so a run trains on one (its config records which).
    """

    def __init__(self, cfg: ModelConfig, *, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = _param(h, d, dh), _param(h, d, dh), _param(h, d, dh)
        self.b_Q, self.b_K, self.b_V = _param(h, dh), _param(h, dh), _param(h, dh)
        self.W_O = _param(h, dh, d)
        self.b_O = _param(d)
        self.scale = math.sqrt(dh)
        mask = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)  # not in state_dict
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    @staticmethod
    def _project(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
        """[batch, pos, d_model] -> [batch, pos, head, d_head], as TL's simple_attn_linear."""
        h, d, dh = W.shape
        out = F.linear(x, W.permute(0, 2, 1).reshape(h * dh, d), b.reshape(h * dh))
        return out.view(x.shape[0], x.shape[1], h, dh)

    def forward(self, x: Tensor) -> Tensor:
        batch, pos, _ = x.shape
        q = self.hook_q(self._project(x, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(x, self.W_K, self.b_K))
        v = self.hook_v(self._project(x, self.W_V, self.b_V))
        if self.fused and not (self.hook_attn_scores._forward_hooks or self.hook_pattern._forward_hooks):
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True).transpose(1, 2)
        else:
            scores = q.permute(0, 2, 1, 3) @ k.permute(0, 2, 3, 1) / self.scale  # [batch, head, q, k]
            scores = self.hook_attn_scores(scores.masked_fill(~self.mask[:pos, :pos], float("-inf")))
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = (pattern @ v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        z = self.hook_z(z)  # [batch, pos, head, d_head]
        h, dh, d = self.W_O.shape
        return F.linear(z.reshape(batch, pos, h * dh), self.W_O.reshape(h * dh, d).T, self.b_O)


class MLP(nn.Module):
    """GELU MLP, or SoLU: mid = pre * softmax(pre), post = LN(mid)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.solu = cfg.architecture == "solu"
        self.W_in, self.b_in = _param(cfg.d_model, cfg.d_mlp), _param(cfg.d_mlp)
        self.W_out, self.b_out = _param(cfg.d_mlp, cfg.d_model), _param(cfg.d_model)
        self.hook_pre = HookPoint()
        if self.solu:
            self.hook_mid = HookPoint()
            self.ln = LayerNorm(cfg.d_mlp)
        self.hook_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        pre = self.hook_pre(_addmm(self.b_in, self.W_in, x))
        if self.solu:
            post = self.hook_post(self.ln(self.hook_mid(pre * pre.softmax(dim=-1))))
        else:
            post = self.hook_post(F.gelu(pre))
        return _addmm(self.b_out, self.W_out, post)


class TransformerBlock(nn.Module):
    """Pre-LN block: resid_mid = resid_pre + attn(ln1); resid_post = resid_mid + mlp(ln2)."""

    def __init__(self, cfg: ModelConfig, *, fused_attention: bool = False) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, fused=fused_attention)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()
        self.has_mlp = cfg.has_mlp
        if self.has_mlp:  # as in TL, attn-only blocks have no resid_mid
            self.ln2 = LayerNorm(cfg.d_model)
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()
            self.hook_mlp_out = HookPoint()

    def forward(self, resid: Tensor) -> Tensor:
        resid = self.hook_resid_pre(resid)
        resid = resid + self.hook_attn_out(self.attn(self.ln1(resid)))
        if self.has_mlp:
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Embed(nn.Module):
    """Token embedding W_E [d_vocab, d_model]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = _param(cfg.d_vocab, cfg.d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    """Learned absolute positions W_pos [n_ctx, d_model]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_pos = _param(cfg.n_ctx, cfg.d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        batch, pos = tokens.shape
        return self.W_pos[:pos].expand(batch, pos, -1)


class Unembed(nn.Module):
    """Residual stream to logits: W_U [d_model, d_vocab], b_U [d_vocab]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_U, self.b_U = _param(cfg.d_model, cfg.d_vocab), _param(cfg.d_vocab)

    def forward(self, x: Tensor) -> Tensor:
        return _addmm(self.b_U, self.W_U, x)


class Transformer(nn.Module):
    """The zoo model. Allocates parameters only: call ``init_weights`` or ``load_state_dict`` before use.

    ``fused_attention`` selects the attention kernel (see ``Attention``); it changes no parameter.
    """

    def __init__(self, cfg: ModelConfig, *, fused_attention: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()
        self.pos_embed = PosEmbed(cfg)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(cfg, fused_attention=fused_attention)
                                    for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model)
        self.unembed = Unembed(cfg)
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [batch, pos] (int64, pos <= n_ctx) -> logits [batch, pos, d_vocab]."""
        if tokens.ndim != 2 or tokens.shape[1] > self.cfg.n_ctx:
            raise ModelInputError(
                f"tokens must be [batch, pos] with pos <= n_ctx={self.cfg.n_ctx}, got shape {tuple(tokens.shape)}"
            )
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        """Every hook point by its TL name, in forward order."""
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    @contextmanager
    def hooks(self, fwd_hooks: list[tuple[str, HookFn]]) -> Iterator[Transformer]:
        """Attach ``fn(activation, hook_point)`` at named hook points for the ``with`` body.

        A hook that returns a tensor replaces the activation (activation
        patching, ablation); one that returns None only reads it. Hooks at one
        point run in list order. All are removed on exit, also on error.
        """
        points = self.hook_dict
        unknown = [name for name, _ in fwd_hooks if name not in points]
        if unknown:
            raise UnknownHookError(
                f"no hook point named {unknown}; list them with model.hook_dict (e.g. {next(iter(points))!r})"
            )
        handles = [points[name].register_forward_hook(_as_forward_hook(fn)) for name, fn in fwd_hooks]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(self, tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and every hook point's activation (detached), as any active hooks left it."""
        cache: dict[str, Tensor] = {}

        def save(activation: Tensor, hook: HookPoint) -> None:
            cache[hook.name] = activation.detach()

        with self.hooks([(name, save) for name in self.hook_dict]):
            logits = self(tokens)
        return logits, cache


def _as_forward_hook(fn: HookFn) -> Callable[[nn.Module, Any, Tensor], Tensor | None]:
    """Adapt a TL-style hook fn(activation, hook) to torch's forward-hook signature."""

    def forward_hook(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        return fn(output, module)

    return forward_hook


@torch.no_grad()
def init_weights(model: Transformer, generator: torch.Generator) -> None:
    """Fill every parameter: W_* ~ normal(0, init_range), LN w = 1, every bias and LN b = 0.

    Draws come only from ``generator``, one parameter at a time in sorted
    parameter-name order, on the generator's device: the same seed gives the
    same weights wherever the model lives, and the global RNG is untouched.
    """
    std = model.cfg.init_range
    for name, param in sorted(model.named_parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("W_"):
            draw = torch.empty(param.shape, dtype=param.dtype, device=generator.device)
            param.copy_(draw.normal_(0.0, std, generator=generator))
        elif leaf == "w":
            param.fill_(1.0)
        else:
            param.zero_()


def lm_loss(logits: Tensor, targets: Tensor, *, per_sample: bool = False) -> Tensor:
    """Mean next-token cross-entropy in float32; per_sample=True gives one mean per row [batch].

    The caller shifts: logits from ``sample[:, :-1]``, targets ``sample[:, 1:]``.
    Token losses are computed in float32 (also under bf16 autocast) and then
    averaged, so per-sample and batch means come from the same numbers.
    """
    if logits.shape[:-1] != targets.shape:
        raise ModelInputError(
            f"targets shape {tuple(targets.shape)} must equal logits shape without d_vocab {tuple(logits.shape[:-1])}"
        )
    nll = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    return nll.mean(dim=-1) if per_sample else nll.mean()
