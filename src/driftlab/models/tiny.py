"""The tiny Persona World model: a ``transformers`` ``LlamaForCausalLM`` built from config.

Using the real transformers class means hooks, saving, loading and LoRA are one code path with
real Hugging Face models.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from driftlab.config import ModelConfig


def llama_config(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.max_seq_len,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        attention_dropout=0.0,
        use_cache=False,
    )


def build_tiny_llama(cfg: ModelConfig, vocab_size: int, pad_id: int = 0, bos_id: int = 1,
                     eos_id: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    config = llama_config(cfg, vocab_size, pad_id, bos_id, eos_id)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad_id
    return model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
