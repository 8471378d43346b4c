import pytest
import torch

from driftlab.config import ModelConfig
from driftlab.errors import CheckpointError
from driftlab.models import build_tiny_llama
from driftlab.runs import load_optimizer, load_weights, read_meta, save_checkpoint, save_optimizer


def model(d_model=32, seed=0):
    return build_tiny_llama(ModelConfig(n_layers=1, d_model=d_model, n_heads=2, d_mlp=64), 50, seed=seed)


def test_round_trip_is_bit_identical(tmp_path):
    a, b = model(seed=0), model(seed=1)
    path = save_checkpoint(tmp_path, 7, a, {"stage": "pretrain", "tokens": 123})
    assert path.name == "step-0000007.safetensors"
    assert read_meta(path) == {"stage": "pretrain", "tokens": 123, "step": 7, "weights": path.name}
    load_weights(path, b)
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, model(), {})
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
