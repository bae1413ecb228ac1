"""transformers' config of a zoo model: the model's TransformerLens fields under model_type "zoo"."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from training.model import ModelConfig
from zoo.hub.interop import MODEL_TYPE


class ZooConfig(PretrainedConfig):
    """The shape of one zoo model, read from a published checkpoint's config.json (zoo.hub.interop writes it).

    Sizes keep TransformerLens's names (`d_model`, `n_layers`, …); transformers' usual names
    (`hidden_size`, `num_hidden_layers`, `vocab_size`, `max_position_embeddings`) map onto them.
    """

    model_type = MODEL_TYPE
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
                     "vocab_size": "d_vocab", "max_position_embeddings": "n_ctx"}

    # Defaults (transformers builds a default config to compare with): the toy zoo's 1l GELU model.
    n_layers: int = 1
    d_model: int = 64
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256
    n_ctx: int = 64
    d_vocab: int = 1024
    architecture: str = "gelu"
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    use_cache: bool = False  # the model recomputes every position; it keeps no key/value cache
    tie_word_embeddings: bool = False
    zoo_run: dict[str, Any] | None = None  # the run and step this checkpoint belongs to

    def model_config(self) -> ModelConfig:
        """The zoo ModelConfig this config describes (ModelConfigError if its fields contradict each other)."""
        fields = ModelConfig(self.n_layers, self.d_model, self.n_heads, self.d_head, self.d_mlp, self.n_ctx,
                             self.d_vocab, self.architecture, self.initializer_range).to_dict()
        # The derived TL fields a published config carries (act_fn, attn_only, …) must agree with the sizes.
        return ModelConfig.from_dict({key: getattr(self, key, value) for key, value in fields.items()})
