"""A zoo model as a transformers causal LM: the same `Transformer` module, behind transformers' API.

`ZooForCausalLM` holds the zoo model itself as `.model`, so its logits are the zoo model's
logits bit for bit, its hooks are the zoo model's hooks, and a published `model.safetensors`
(keys `embed.W_E`, `blocks.0.attn.W_Q`, …) loads as it is: transformers adds the `model.`
prefix it expects. The model keeps no key/value cache, so `generate` runs the whole prefix at
each new token, as a greedy loop over the zoo model would.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from training.model import Attention, Transformer, init_weights
from zoo.hf.config import ZooConfig
from zoo.hf.weights import verified_revision


class ZooForCausalLM(PreTrainedModel, GenerationMixin):
    """A zoo model in transformers: `AutoModelForCausalLM.from_pretrained(repo, subfolder="checkpoints/step…")`."""

    config_class = ZooConfig
    base_model_prefix = "model"
    _no_split_modules = ["TransformerBlock"]

    def __init__(self, config: ZooConfig) -> None:
        super().__init__(config)
        self.model = Transformer(config.model_config())
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, subfolder: str = "",
                        revision: str | None = None, **kwargs: Any) -> ZooForCausalLM:
        """transformers' from_pretrained, from safetensors only, after zoo checked the weights against the
        run's manifest (IntegrityError if they differ; see zoo.hf.weights)."""
        revision = verified_revision(pretrained_model_name_or_path, subfolder, revision)
        return super().from_pretrained(pretrained_model_name_or_path, *args, subfolder=subfolder, revision=revision,
                                       use_safetensors=True, **kwargs)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights of a model built from a config alone (from_pretrained overwrites them all); and the
        causal mask, a buffer no checkpoint holds."""
        if isinstance(module, Transformer):
            init_weights(module, torch.Generator().manual_seed(0))
        elif isinstance(module, Attention):
            module.mask.copy_(torch.ones_like(module.mask).tril())

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embed

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                **kwargs: Any) -> CausalLMOutput:
        """Logits of `input_ids` [batch, pos]; with `labels`, the mean next-token loss (-100 ignored).

        The model has no padding mask: padding must follow the text (right padding), where
        causal attention keeps it from changing any logit of the text.
        """
        if attention_mask is not None and bool((attention_mask.diff(dim=-1) > 0).any()):
            raise ValueError("zoo models have no padding mask: pad on the right (tokenizer.padding_side = "
                             "'right'), not on the left")
        logits = self.model(input_ids)
        loss = None if labels is None else self.loss_function(logits, labels, vocab_size=self.config.d_vocab)
        return CausalLMOutput(loss=loss, logits=logits)
