"""Models: the tiny Llama builder and named hook points (activation cache, steering)."""

from driftlab.models.hooks import ActivationCache, capture, hook_points, steer
from driftlab.models.tiny import build_tiny_llama, llama_config, n_params

__all__ = ["ActivationCache", "capture", "hook_points", "steer", "build_tiny_llama", "llama_config",
           "n_params"]
