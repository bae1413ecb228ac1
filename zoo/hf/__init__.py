"""Zoo models in transformers: `ZooConfig` and `ZooForCausalLM`, registered with the Auto classes.

Importing zoo registers them as soon as transformers is imported as well (at once if it already
is), so that

    import zoo
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("me/toy-solu-1l-seed0", subfolder="checkpoints/step00000600")
    tokenizer = AutoTokenizer.from_pretrained("me/toy-solu-1l-seed0")

loads a published checkpoint (each checkpoint folder of a run repo holds transformers'
config.json beside its model.safetensors; see zoo.hub.interop). The model's logits are
`zoo.load`'s bit for bit. Registration waits for transformers because importing it costs
about a second and 150 MB, which the `zoo` commands, none of which use it, should not pay.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any


def register_when_transformers_loads() -> None:
    """Register zoo's classes with transformers' Auto classes now if transformers is imported, else
    right after it is (an import hook that removes itself), and never if it is not installed."""
    if "transformers" in sys.modules:
        importlib.import_module("zoo.hf.auto")
    elif (importlib.util.find_spec("transformers") is not None
          and not any(isinstance(finder, _AfterTransformers) for finder in sys.meta_path)):
        sys.meta_path.insert(0, _AfterTransformers())


class _AfterTransformers(importlib.abc.MetaPathFinder):
    """Finds transformers as the other finders do, and registers zoo's classes once it has executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        execute = spec.loader.exec_module

        def execute_then_register(module: Any) -> None:
            execute(module)
            importlib.import_module("zoo.hf.auto")

        spec.loader.exec_module = execute_then_register
        return spec


def __getattr__(name: str) -> Any:
    if name in ("ZooConfig", "ZooForCausalLM"):  # they subclass transformers' classes: imported on first use
        return getattr(importlib.import_module("zoo.hf.auto"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ZooConfig", "ZooForCausalLM", "register_when_transformers_loads"]
