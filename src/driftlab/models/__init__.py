"""Models: the tiny Llama builder (later: local HF / SmolLM2 loader, named hook points)."""

from driftlab.models.tiny import build_tiny_llama, llama_config, n_params

__all__ = ["build_tiny_llama", "llama_config", "n_params"]
