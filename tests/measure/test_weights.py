import pytest
import torch

from driftlab.config import ModelConfig
from driftlab.measure.forward import PromptBank
from driftlab.measure.weights import mean_kl, module_group, output_kl_rows, snapshot, weight_rows
from driftlab.models import build_tiny_llama
from driftlab.models.hooks import capture


def model(tie: bool = False):
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, tie_embeddings=tie)
    return build_tiny_llama(cfg, 40, seed=0).eval()


def _by_site(rows, metric):
    return {r["site"]: r["value"] for r in rows if r["metric"] == metric}


def test_every_parameter_has_a_module_group():
    groups = {module_group(n) for n, _ in model().named_parameters()}
    assert groups == {"embed", "head", "layers.0.attn", "layers.0.mlp", "layers.1.attn", "layers.1.mlp"}
    assert module_group("model.layers.11.post_attention_layernorm.weight") == "layers.11.mlp"
    assert module_group("model.layers.3.input_layernorm.weight") == "layers.3.attn"
    # tied embeddings: the shared matrix is one parameter, counted under embed
    assert "lm_head.weight" not in dict(model(tie=True).named_parameters())


def test_weight_distance_is_zero_at_the_anchor_and_moves_only_the_touched_group():
    m = model()
    anchor = snapshot(m)
    assert set(_by_site(weight_rows(m, anchor, "reference"), "weight_rel_l2").values()) == {0.0}
    with torch.no_grad():
        m.model.layers[1].mlp.up_proj.weight.add_(0.5)
    rows = weight_rows(m, anchor, "reference")
    rel, upd = _by_site(rows, "weight_rel_l2"), _by_site(rows, "weight_update_l2")
    moved = {g for g, v in rel.items() if v > 0}
    assert moved == {"layers.1.mlp", "all"}
    n = m.model.layers[1].mlp.up_proj.weight.numel()
    assert upd["layers.1.mlp"] == pytest.approx(0.5 * n**0.5, rel=1e-5)
    base = sum(float(anchor[k].double().pow(2).sum()) for k in anchor if module_group(k) == "layers.1.mlp")
    assert rel["layers.1.mlp"] == pytest.approx(0.5 * n**0.5 / base**0.5, rel=1e-5)
    assert all(r["context"] == "reference" for r in rows)


def test_output_kl_is_the_textbook_kl():
    g = torch.Generator().manual_seed(0)
    p = torch.log_softmax(torch.randn(50, 7, generator=g), -1)
    q = torch.log_softmax(torch.randn(50, 7, generator=g), -1)
    assert mean_kl(p, p) == 0.0
    expected = torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean")  # KL(p || q)
    assert mean_kl(p, q) == pytest.approx(float(expected), rel=1e-5)
    rows = output_kl_rows({"text": p}, {"text": q}, "stage_start")
    assert rows[0]["domain"] == "text" and rows[0]["value"] > 0


def test_prompt_bank_reads_each_sequence_as_a_lone_forward_would():
    m = model()
    seqs = [[1, 5, 6, 7], [1, 8, 9], [1, 5, 6, 7], [1, 2, 3, 4, 5, 6]]
    bank = PromptBank()
    bank.add("a", seqs[:2])
    bank.add("b", seqs[2:])
    assert len(bank.seqs) == 3  # the repeated sequence is run once
    sites = ["layers.0.resid_post", "layers.1.resid_post"]
    reading = bank.read(m, sites, batch_size=2, pad=0)
    for name, chunk in (("a", seqs[:2]), ("b", seqs[2:])):
        logits, acts = reading.take(name)
        for row, seq in enumerate(chunk):
            with torch.no_grad(), capture(m, sites) as cache:
                out = m(input_ids=torch.tensor([seq])).logits
            assert torch.allclose(logits[row], out[0, -1], atol=1e-5)
            for j, site in enumerate(sites):
                assert torch.allclose(acts[row, j], cache[site][0, -1], atol=1e-5)
    # without logits only the decoder runs: the same activations, bit for bit, and no logits
    bare = bank.read(m, sites, batch_size=2, pad=0, logits=False)
    assert bare.logits is None and torch.equal(bare.acts, reading.acts)
