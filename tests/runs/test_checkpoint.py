import errno
import os
import stat

import pytest
import torch

from driftlab.config import ModelConfig
from driftlab.errors import CheckpointError, StorageError
from driftlab.models import build_tiny_llama
from driftlab.runs import load_optimizer, load_weights, read_meta, save_checkpoint, save_optimizer
from driftlab.runs.checkpoint import load_tensors, save_tensors


def model(d_model=32, seed=0):
    return build_tiny_llama(ModelConfig(n_layers=1, d_model=d_model, n_heads=2, d_mlp=64), 50, seed=seed)


def test_round_trip_is_bit_identical(tmp_path):
    a, b = model(seed=0), model(seed=1)
    path = save_checkpoint(tmp_path, 7, a, {"stage": "pretrain", "tokens": 123})
    assert path.name == "step-0000007.safetensors"
    meta = read_meta(path)
    assert {k: v for k, v in meta.items() if k != "sha256"} == {"stage": "pretrain", "tokens": 123, "step": 7,
                                                                 "weights": path.name}
    load_weights(path, b)
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, model(), {})
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{path.name}: not a readable safetensors file"):
        load_weights(path, model())


def test_mismatched_checkpoint_names_the_key(tmp_path):
    path = save_checkpoint(tmp_path, 1, model(d_model=32), {})
    with pytest.raises(CheckpointError, match=r"model.embed_tokens.weight: shape \(50, 32\) does not match"):
        load_weights(path, model(d_model=64))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_weights(tmp_path / "nope.safetensors", model())


def test_optimizer_state_round_trip(tmp_path):
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(input_ids=torch.randint(0, 50, (2, 8))).logits.sum().backward()
    opt.step()
    save_optimizer(tmp_path / "opt.safetensors", opt, {"step": 3})
    opt2 = torch.optim.AdamW(m.parameters(), lr=1e-3)
    assert load_optimizer(tmp_path / "opt.safetensors", opt2) == {"step": 3}
    for p in m.parameters():
        assert opt.state[p].keys() == opt2.state[p].keys()
        for k in opt.state[p]:
            assert torch.equal(opt.state[p][k], opt2.state[p][k])


def change_byte(path, offset):
    """Flip one byte in place, as a disk or copy error would (write-once files are read-only)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        at = f.tell()
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x01]))


def test_every_file_records_its_hash_and_a_changed_byte_is_named(tmp_path):
    path = save_checkpoint(tmp_path, 3, model(), {"stage": "align"})
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0  # write-once: read-only
    assert stat.S_IMODE(path.with_suffix(".json").stat().st_mode) & 0o222 == 0
    load_weights(path, model(), require_hash=True)
    change_byte(path, path.stat().st_size - 5)  # in a tensor's bytes: still a readable file
    with pytest.raises(CheckpointError, match=rf"{path.name}: content does not match the SHA-256"):
        load_weights(path, model())
    meta = path.with_suffix(".json")
    text = meta.read_text()
    os.chmod(meta, 0o644)
    meta.write_text(text.replace('"step": 3', '"step": 4'))
    with pytest.raises(CheckpointError, match=rf"{meta.name}: content does not match the SHA-256"):
        read_meta(path)
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(input_ids=torch.randint(0, 50, (2, 8))).logits.sum().backward()
    opt.step()
    save_optimizer(tmp_path / "opt.safetensors", opt, {"step": 3})
    change_byte(tmp_path / "opt.safetensors", (tmp_path / "opt.safetensors").stat().st_size - 5)
    with pytest.raises(CheckpointError, match="opt.safetensors: content does not match"):
        load_optimizer(tmp_path / "opt.safetensors", torch.optim.AdamW(m.parameters(), lr=1e-3))


def test_a_file_without_a_hash_is_refused_where_one_is_required(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    assert torch.equal(load_tensors(tmp_path / "other.safetensors")["x"], torch.zeros(3))
    with pytest.raises(CheckpointError, match="other.safetensors: no SHA-256 recorded"):
        load_tensors(tmp_path / "other.safetensors", require_hash=True)


def test_a_full_disk_leaves_the_old_file_and_says_so(tmp_path, monkeypatch):
    save_tensors(tmp_path / "a.safetensors", {"x": torch.ones(4)})
    before = (tmp_path / "a.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("driftlab.runs.atomic.os.fsync", full)
    with pytest.raises(StorageError, match=r"a.safetensors: could not be written: No space left on device .*resume"):
        save_tensors(tmp_path / "a.safetensors", {"x": torch.zeros(4)})
    assert (tmp_path / "a.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]  # no temporary file left
