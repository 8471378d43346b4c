import pytest
import torch

from driftlab.config import ModelConfig
from driftlab.models import build_tiny_llama
from driftlab.models.hooks import capture, hook_points, steer


def model():
    return build_tiny_llama(ModelConfig(n_layers=3, d_model=32, n_heads=2, d_mlp=64), 40, seed=0).eval()


def test_names_are_stable_and_ordered():
    names = hook_points(model())
    assert names[:4] == ["embed", "layers.0.attn_out", "layers.0.mlp_out", "layers.0.resid_post"]
    assert names[-1] == "layers.2.resid_post" and len(names) == 1 + 3 * 3


def test_cache_equals_output_hidden_states_bit_for_bit():
    m, x = model(), torch.randint(0, 40, (2, 9))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m(input_ids=x, output_hidden_states=True)  # transformers may add hooks of its own on first use
    hooks_before = [len(mod._forward_hooks) for mod in m.modules()]
    with torch.no_grad(), capture(m) as cache:
        out = m(input_ids=x, output_hidden_states=True)
    hs = out.hidden_states  # embed, layer 0 .. layer L-2 outputs, then norm(layer L-1 output)
    assert torch.equal(cache["embed"], hs[0])
    for i in range(2):
        assert torch.equal(cache[f"layers.{i}.resid_post"], hs[i + 1])
    assert torch.equal(m.model.norm(cache["layers.2.resid_post"]), hs[3])
    # the residual stream is the sum of its parts
    resid = cache["layers.1.resid_post"] + cache["layers.2.attn_out"] + cache["layers.2.mlp_out"]
    torch.testing.assert_close(resid, cache["layers.2.resid_post"])
    # reading changed no weight, and the hooks are gone afterwards
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert [len(mod._forward_hooks) for mod in m.modules()] == hooks_before


def test_steering_adds_the_vector_only_inside_the_block():
    m, x = model(), torch.randint(0, 40, (1, 5))
    v = torch.randn(32)
    with torch.no_grad():
        with capture(m, ["layers.0.resid_post"]) as plain:
            m(input_ids=x)
        with steer(m, "layers.0.resid_post", v, alpha=2.0), capture(m, ["layers.0.resid_post"]) as steered:
            logits_steered = m(input_ids=x).logits
        logits_after = m(input_ids=x).logits
        logits_plain = m(input_ids=x).logits
    torch.testing.assert_close(steered["layers.0.resid_post"], plain["layers.0.resid_post"] + 2.0 * v)
    assert not torch.allclose(logits_steered, logits_plain)
    assert torch.equal(logits_after, logits_plain)


def test_unknown_hook_point():
    with pytest.raises(KeyError, match="unknown hook point 'layers.9.resid_post'"):
        with capture(model(), ["layers.9.resid_post"]):
            pass
