"""Registers `ZooConfig` and `ZooForCausalLM` with transformers' Auto classes (see zoo.hf)."""

from transformers import AutoConfig, AutoModelForCausalLM

from zoo.hf.config import ZooConfig
from zoo.hf.model import ZooForCausalLM

AutoConfig.register(ZooConfig.model_type, ZooConfig, exist_ok=True)
AutoModelForCausalLM.register(ZooConfig, ZooForCausalLM, exist_ok=True)

__all__ = ["ZooConfig", "ZooForCausalLM"]
