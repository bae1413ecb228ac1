"""Zoo models in transformers: `ZooConfig` and `ZooForCausalLM`, registered with the Auto classes.

Importing zoo registers them (when transformers is installed), so that

    import zoo
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("me/toy-solu-1l-seed0", subfolder="checkpoints/step00000600")
    tokenizer = AutoTokenizer.from_pretrained("me/toy-solu-1l-seed0")

loads a published checkpoint (each checkpoint folder of a run repo holds transformers'
config.json beside its model.safetensors; see zoo.hub.interop). The model's logits are
`zoo.load`'s bit for bit.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from zoo.hf.config import ZooConfig
from zoo.hf.model import ZooForCausalLM

AutoConfig.register(ZooConfig.model_type, ZooConfig, exist_ok=True)
AutoModelForCausalLM.register(ZooConfig, ZooForCausalLM, exist_ok=True)

__all__ = ["ZooConfig", "ZooForCausalLM"]
