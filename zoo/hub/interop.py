"""Files a run repo carries for other libraries: transformers' config per checkpoint, and the tokenizer.

A run's own config.json describes the run (training, data, seeds) and cannot name a
transformers `model_type` without changing the bytes of every run trained before. So each
published checkpoint folder gets a small `config.json` in transformers' form beside its
`model.safetensors`, and `AutoModelForCausalLM.from_pretrained(repo, subfolder=
"checkpoints/step00000600")` finds both there: the weights are the published file itself.
The zoo's tokenizer is copied to the repo's root (with a `tokenizer_config.json`) so that
`AutoTokenizer.from_pretrained(repo)` works; zoo's own loader reads it from the dataset repo.

These files are derived from the run's files like the card, so they are written with it,
outside the manifest, and publishing again makes the same bytes.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from checkpoints_manifest import Manifest, canonical_json
from data_index import EOS_TOKEN
from training.checkpoint import checkpoint_dir_name

MODEL_TYPE = "zoo"  # transformers' model_type of zoo models (zoo.hf registers it)


def transformers_config(config: dict[str, Any], step: int, eos_token_id: int) -> dict[str, Any]:
    """transformers' config.json of the run's checkpoint `step`: the model in TransformerLens fields."""
    run = config["run"]
    return {
        "architectures": ["ZooForCausalLM"],
        "model_type": MODEL_TYPE,
        **config["model"],
        "bos_token_id": eos_token_id,  # a document starts after the previous one's EOS
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
        "use_cache": False,  # the model keeps no key/value cache: generate runs the whole prefix each step
        "zoo_run": {key: run[key] for key in ("zoo", "model", "init_seed", "data_seed")} | {"step": step},
    }


def interop_files(config: dict[str, Any], manifest: Manifest, tokenizer_json: bytes) -> dict[str, bytes]:
    """Every transformers file of a run repo: the tokenizer at the root and a config per checkpoint."""
    eos = Tokenizer.from_str(tokenizer_json.decode()).token_to_id(EOS_TOKEN)
    files = {"tokenizer.json": tokenizer_json, "tokenizer_config.json": canonical_json({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS_TOKEN, "bos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN, "model_max_length": config["model"]["n_ctx"], "add_prefix_space": False,
    }).encode()}
    for step in manifest.checkpoints:
        files[f"checkpoints/{checkpoint_dir_name(step)}/config.json"] = canonical_json(
            transformers_config(config, step, eos)).encode()
    return files
