"""Export a zoo checkpoint to TransformerLens (TL) and load it there: TL 4's TransformerBridge, or TL 3's
HookedTransformer.

Our parameters already carry TL's names and shapes, so the export is a copy: the state dict
unchanged, and a config built from our config's TL fields. TL 4 builds its own native model from
that config (`TransformerBridge.boot_native`) and takes TL-format weights through its checkpoint
converter; TL 3 builds a HookedTransformer. `export` writes `tl_config.json` + `model.safetensors`
(no pickle); `load_exported` builds the installed TL's model from them. TransformerLens 4 is the
optional extra `tl`, TL 3 the extra `tl3`.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors.torch

from checkpoints_manifest import atomic_write, atomic_write_json
from training.model import ModelConfig, Transformer
from zoo.analysis._errors import AnalysisError

CONFIG_FILE = "tl_config.json"
WEIGHTS_FILE = "model.safetensors"


def tl_config(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of TL's HookedTransformerConfig that make its model compute ours."""
    return {
        "n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_head": cfg.d_head,
        "d_mlp": cfg.d_mlp if cfg.has_mlp else None, "n_ctx": cfg.n_ctx, "d_vocab": cfg.d_vocab,
        "d_vocab_out": cfg.d_vocab, "act_fn": cfg.act_fn, "attn_only": not cfg.has_mlp,
        "normalization_type": "LN", "positional_embedding_type": "standard", "eps": cfg.to_dict()["eps"],
        "init_weights": False, "default_prepend_bos": False, "original_architecture": f"zoo-{cfg.architecture}",
    }


def export(model: Transformer, out_dir: str | Path) -> Path:
    """Write `tl_config.json` and `model.safetensors` (TL names) into `out_dir`; return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: safetensors.torch.save_file(tensors, str(tmp)))
    atomic_write_json(out_dir / CONFIG_FILE, tl_config(model.cfg))
    return out_dir


def to_transformer_bridge(model: Transformer) -> Any:
    """The same weights in a TransformerLens 4 TransformerBridge over TL's native model (`pip install .[tl]`)."""
    _require_tl(4)
    return _bridge(tl_config(model.cfg), model.state_dict())


def to_hooked_transformer(model: Transformer) -> Any:
    """The same weights in a TransformerLens 3 HookedTransformer (`pip install .[tl3]`)."""
    _require_tl(3)
    return _hooked(tl_config(model.cfg), model.state_dict())


def load_exported(path: str | Path) -> Any:
    """The installed TransformerLens's model (TL 4: a TransformerBridge, TL 3: a HookedTransformer) from a
    folder written by `export`."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise AnalysisError(f"{path} is not a TL export (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                            f"write one with zoo.analysis.export_tl.export")
    build = _bridge if _tl_major() >= 4 else _hooked
    return build(json.loads((path / CONFIG_FILE).read_text()), safetensors.torch.load_file(path / WEIGHTS_FILE))


def _tl_major() -> int:
    try:
        return int(version("transformer-lens").split(".")[0])
    except PackageNotFoundError:
        raise AnalysisError("TransformerLens is not installed; install the extra: pip install '.[tl]' "
                            "(TransformerLens 4) or '.[tl3]' (TransformerLens 3)") from None


def _require_tl(major: int) -> None:
    installed = _tl_major()
    if installed != major:
        use = "to_transformer_bridge" if installed >= 4 else "to_hooked_transformer"
        raise AnalysisError(f"TransformerLens {installed} is installed; this export needs TransformerLens {major}. "
                            f"Use {use} with it, or install the extra '.[{'tl' if major == 4 else 'tl3'}]'")


def _bridge(config: dict[str, Any], state_dict: dict) -> Any:
    from transformer_lens import TransformerBridge, TransformerBridgeConfig
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    bridge = TransformerBridge.boot_native(TransformerBridgeConfig.from_dict(config))
    result = bridge.load_state_dict(convert_tl_checkpoint(dict(state_dict), bridge.cfg), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise AnalysisError(f"state dict does not fit TL's native model: missing {result.missing_keys}, "
                            f"unexpected {result.unexpected_keys}")
    return bridge.eval()


def _hooked(config: dict[str, Any], state_dict: dict) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tl = HookedTransformer(HookedTransformerConfig(**config))
    result = tl.load_state_dict(state_dict, strict=False)
    # TL keeps its causal mask and IGNORE constant as buffers in its state dict; we do not.
    missing = [k for k in result.missing_keys if not k.endswith((".mask", ".IGNORE"))]
    if missing or result.unexpected_keys:
        raise AnalysisError(f"state dict does not fit TL's model: missing {missing}, "
                            f"unexpected {result.unexpected_keys}")
    return tl.eval()
