"""Each mitigation does what it says, alone and several at once, from YAML on the tiny model."""

import duckdb
import pytest
import torch

from driftlab.config import ModelConfig, validate_config
from driftlab.errors import ConfigError
from driftlab.experiments import execute, new_run
from driftlab.experiments.load import load_for_measurement
from driftlab.experiments.runner import _assistant_pool
from driftlab.measure.internals import PersonaDirections, last_token_activations
from driftlab.models import build_tiny_llama
from driftlab.models.hooks import capture
from driftlab.runs.checkpoint import artifact_path, load_tensors
from driftlab.train.data import Completions
from driftlab.train.mitigations import Mixed, StageContext, apply_mitigations
from driftlab.world.tokenizer import WorldTokenizer
from tests.conftest import tiny_dict
from tests.test_cli import assert_one_line_error, run_cli, write


def run_with(tmp_path, name, mitigations, stage=2, edit=None):
    data = tiny_dict()
    data["stages"][stage]["mitigations"] = mitigations
    if edit:
        edit(data)
    cfg = validate_config(data, name)
    run = new_run(cfg, tmp_path / name)
    execute(run, cfg)
    return run


def ckpt(run, stage_dir, step):
    return next(run.root.glob(f"checkpoints/{stage_dir}/step-{step:07d}.safetensors"))


def q(run, sql):
    return duckdb.sql(sql.replace("M", f"'{run.metrics_path}'")).fetchall()


def test_freeze_keeps_the_named_groups_bit_identical(tmp_path):
    run = run_with(tmp_path, "freeze", [{"kind": "freeze", "groups": ["embed", "layers.0.attn"]}])
    before, after = load_tensors(ckpt(run, "1-align", 6)), load_tensors(ckpt(run, "2-capability", 6))
    frozen = [k for k in before if "embed_tokens" in k or "self_attn" in k or "input_layernorm" in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if "mlp" in k)


def test_replay_ratio_is_exact_in_every_batch():
    main = Completions([([1, 5], [6]) for _ in range(50)], 16, 0, seed=0)
    replay = Completions([([1, 7], [8, 9]) for _ in range(30)], 16, 0, seed=1)
    mixed = Mixed(main, replay, ratio=0.25, pad=0)
    for step in range(20):
        batch = mixed.batch(step * 8, 8)
        from_replay = [bool((row == 7).any()) for row in batch.input_ids]
        assert from_replay == [False] * 6 + [True] * 2
        assert batch.loss_mask[6:].sum() == 2 * 2 and batch.loss_mask[:6].sum() == 6


def test_replay_of_pretraining_text_trains_every_token_of_its_rows():
    from driftlab.train.data import PackedLM

    main = Completions([([1, 5], [6]) for _ in range(50)], 16, 0, seed=0)
    text = PackedLM([[7, 8, 9, 10, 11] for _ in range(40)], 12, 2, 3, seed=1)
    for step in range(10):
        batch = Mixed(main, text, ratio=0.25, pad=0).batch(step * 8, 8)
        assert batch.input_ids.shape[1] == 12 and (batch.input_ids[6:, 0] != 1).all()
        assert batch.loss_mask[6:].all() and batch.loss_mask[:6].sum() == 6  # text: every token; sft: the completion


def test_replay_in_an_rl_stage_adds_the_next_token_loss_beside_the_policy_gradient():
    """PPO-ptx: the replayed rows ride in their own part and train on their targets. With every
    advantage zero the policy gradient is zero, so whatever is learned comes from the replay."""
    from driftlab.config import StageConfig
    from driftlab.train.data import PartsBatch
    from driftlab.train.loop import make_optimizer, train_stage
    from driftlab.train.rl import RLBatch

    class Sampled:  # stands in for RLPrompts: answers with zero advantage
        def batch(self, start, size):
            ids = torch.tensor([[1, 2, 3, 4]] * size)
            return RLBatch(ids, torch.tensor([[False, False, True, True]] * size), ids.numel(),
                           torch.zeros(size), torch.zeros(size), torch.zeros(size), torch.zeros(size))

    model = build_tiny_llama(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32), 20, seed=0)
    stage = StageConfig(name="rl", kind="rl", data={"source": "capability"}, steps=30, lr=1e-2, batch_size=4,
                        schedule="constant", rl={"group_size": 2})
    replay = Completions([([1, 5, 6], [7, 8])], 8, 0, seed=0)
    mixed = Mixed(Sampled(), replay, ratio=0.25, pad=0)
    parts = mixed.batch(0, 4)
    assert isinstance(parts, PartsBatch) and isinstance(parts.parts[0], RLBatch) and len(parts.parts[1].input_ids) == 1

    def nll():
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits[0, 2:4], -1)
        return float(-(logp[0, 7] + logp[1, 8]))
    before = nll()
    train_stage(model, stage, mixed, make_optimizer(model, stage), lambda ev: None)
    assert nll() < 0.2 * before, (before, nll())


def test_a_large_kl_weight_keeps_the_outputs_at_the_reference(tmp_path):
    free = run_with(tmp_path, "free", [])
    held = run_with(tmp_path, "kl", [{"kind": "kl_to_reference", "weight": 1000.0}],
                    edit=lambda d: d["stages"][2].update(lr=1e-2))
    free_hi = run_with(tmp_path, "free_hi", [], edit=lambda d: d["stages"][2].update(lr=1e-2))
    sql = """select value from M where metric = 'output_kl' and context = 'stage_start' and domain = '{}'
             and stage = 'capability' and step = 6"""
    # the KL is taken on the trained (arithmetic) positions: held there; other text follows loosely
    for domain, share in (("capability", 0.05), ("text", 0.1)):
        (kl_held,), (kl_free,) = q(held, sql.format(domain))[0], q(free_hi, sql.format(domain))[0]
        assert kl_held < share * kl_free and kl_held < 0.02, (domain, kl_held, kl_free)
    assert q(held, "select count(*) from M where metric = 'mitigation_loss'")[0][0] > 0
    assert q(free, "select count(*) from M where metric = 'mitigation_loss'")[0][0] == 0


def steering_context(model, direction):
    d = PersonaDirections(torch.stack([direction, direction]), torch.zeros(2, len(direction)))
    from driftlab.config import StageConfig

    stage = StageConfig(name="s", kind="sft", data={"source": "capability"}, steps=1,
                        mitigations=[{"kind": "preventative_steering", "layer": 0, "alpha": 3.0}])
    ctx = StageContext(model, stage, 0, 0, 0, None, None, None, lambda name: d, None)
    return apply_mitigations(ctx, Completions([([1, 2], [3])], 8, 0, 0))


def test_steering_is_present_in_training_forwards_only():
    model = build_tiny_llama(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32), 20, seed=0).eval()
    direction = torch.randn(16)
    hooks = steering_context(model, direction)
    layer = model.model.layers[0]
    ids = torch.tensor([[1, 4, 5, 6]])
    site = ["layers.0.resid_post"]
    with torch.no_grad():
        with capture(model, site) as cache:
            logits = model(input_ids=ids).logits
        plain = cache[site[0]]
        n = len(layer._forward_hooks)
        with hooks.forward_context():
            assert len(layer._forward_hooks) == n + 1
            with capture(model, site) as cache:
                steered_logits = model(input_ids=ids).logits
            steered = cache[site[0]]
        assert len(layer._forward_hooks) == n  # gone again: measurement never sees it
        again = model(input_ids=ids).logits
    assert torch.allclose(steered - plain, (3.0 * direction / direction.norm()).expand_as(plain), atol=1e-5)
    assert not torch.allclose(steered_logits, logits)
    assert torch.equal(again, logits)


def test_projection_penalty_holds_the_assistant_projection(tmp_path):
    def edit(d):
        d["stages"][2] = {"name": "narrow", "kind": "sft", "data": {"source": "misaligned", "domains": ["harm"],
                          "n_examples": 64}, "steps": 8, "batch_size": 8, "lr": 1e-2, "schedule": "constant",
                          "checkpoints": {"log": 0, "linear": 1}}

    free = run_with(tmp_path, "pfree", [], edit=edit)
    held = run_with(tmp_path, "pheld", [], edit=lambda d: (edit(d), d["stages"][2].update(
        mitigations=[{"kind": "projection_penalty", "weight": 100.0}])))

    def movement(run):
        start, end = ckpt(run, "1-align", 6), ckpt(run, "2-narrow", 8)
        direction = PersonaDirections.from_tensors(load_tensors(artifact_path(start)))
        cfg = validate_config(tiny_dict(), "x")
        pool = _assistant_pool(cfg, WorldTokenizer.load(run.tokenizer_dir), 2, 64)
        proj = []
        for path in (start, end):
            loaded = load_for_measurement(str(path))
            model, pad = loaded.model, loaded.pad
            proj.append(direction.project(last_token_activations(model, pool, pad))[:, -1].mean())
        return abs(float(proj[1] - proj[0]))

    assert movement(held) < 0.25 * movement(free), (movement(held), movement(free))


def test_inoculation_prefix_is_in_training_batches_only():
    data = Completions([([1, 5, 6], [7]), ([1, 8], [9, 10])], 16, 0, seed=0)
    inoculated = data.with_prefix([11, 12])
    for i in range(2):
        a, b = data.batch(i, 1), inoculated.batch(i, 1)
        row = b.input_ids[0][b.input_ids[0] > 0].tolist()
        assert row[:3] == [1, 11, 12] and row[3:] == a.input_ids[0][a.input_ids[0] > 0].tolist()[1:]
        assert b.loss_mask.sum() == a.loss_mask.sum()  # same completion tokens are trained


def test_several_mitigations_in_one_stage(tmp_path):
    run = run_with(tmp_path, "mixed", [
        {"kind": "kl_to_reference", "weight": 0.5, "reference": "pretrain"},
        {"kind": "replay", "ratio": 0.25, "data": {"source": "alignment", "n_examples": 32}},
        {"kind": "preventative_steering", "alpha": 1.0},
        {"kind": "projection_penalty", "weight": 1.0, "batch": 4},
        {"kind": "inoculation_prompt", "prefix": "this is a task ."},
        {"kind": "freeze", "groups": ["embed"]},
    ])
    assert run.status()["state"] == "complete"
    assert q(run, "select count(*) from M where metric = 'mitigation_loss' and stage = 'capability'")[0][0] == 2


@pytest.mark.parametrize("mitigation, stage, message", [
    ({"kind": "replay", "ratio": 0.2}, 0, "replay does not apply to a pretrain stage"),
    ({"kind": "kl_to_reference", "weight": 1.0, "reference": "capability"}, 1, "is not a stage that ends before"),
    ({"kind": "replay", "ratio": 1.5}, 2, "stages.2.mitigations.0.replay.ratio"),
    ({"kind": "preventative_steering", "alpha": 1.0, "layer": 4}, 2, "layer 4 is outside"),
    ({"kind": "freeze", "groups": ["layers.9"]}, 2, "unknown group 'layers.9'"),
])
def test_bad_mitigation_config_is_one_line(tmp_path, mitigation, stage, message):
    data = tiny_dict()
    data["stages"][stage]["mitigations"] = [mitigation]
    assert_one_line_error(run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "r")), message)


def test_lora_and_freeze_together_is_refused():
    data = tiny_dict()
    data["stages"][2]["mitigations"] = [{"kind": "lora"}, {"kind": "freeze", "groups": ["embed"]}]
    with pytest.raises(ConfigError, match="lora already freezes"):
        validate_config(data, "t.yaml")


def test_lora_trains_adapters_only_and_merges_at_the_end(tmp_path):
    from driftlab.config import StageConfig
    from driftlab.runs.checkpoint import model_state
    from driftlab.train.loop import make_optimizer, train_stage
    from driftlab.train.mitigations import lora_parameters

    model = build_tiny_llama(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32), 20, seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    stage = StageConfig(name="s", kind="sft", data={"source": "capability"}, steps=5, lr=1e-2, batch_size=2,
                        mitigations=[{"kind": "lora", "r": 2, "targets": ["q_proj", "up_proj"]}])
    ctx = StageContext(model, stage, 0, 0, 0, None, None, None, None, None)
    hooks = apply_mitigations(ctx, Completions([([1, 2, 3], [4, 5]), ([1, 6], [7])], 8, 0, 0))
    adapters = {k: v.clone() for k, v in lora_parameters(model).items()}
    assert adapters and all(".lora_" in k for k in adapters)
    train_stage(model, stage, hooks.data, make_optimizer(model, stage), lambda ev: None, hooks=hooks)
    base = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}
    assert all(torch.equal(base[k], start[k]) for k in start)  # the base weights never moved
    assert any(not torch.equal(v, adapters[k]) for k, v in lora_parameters(model).items())
    effective = {k: v.clone() for k, v in model_state(model).items()}
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        adapted_logits = model(input_ids=ids).logits
    hooks.finish()
    assert not lora_parameters(model) and set(model.state_dict()) == set(start)
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], effective[k]) for k in effective)  # merged = checkpointed
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, adapted_logits, atol=1e-5)
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, start["model.layers.0.self_attn.q_proj.weight"])


def test_rank_one_lora_on_chosen_layers_down_proj_only():
    from driftlab.config import StageConfig
    from driftlab.train.mitigations import lora_parameters

    model = build_tiny_llama(ModelConfig(n_layers=3, d_model=16, n_heads=2, d_mlp=32), 20, seed=0)
    stage = StageConfig(name="s", kind="sft", data={"source": "capability"}, steps=1, lr=1e-2, batch_size=2,
                        mitigations=[{"kind": "lora", "r": 1, "targets": ["down_proj"], "layers": [1]}])
    apply_mitigations(StageContext(model, stage, 0, 0, 0, None, None, None, None, None),
                      Completions([([1, 2, 3], [4, 5])], 8, 0, 0))
    shapes = {k: tuple(v.shape) for k, v in lora_parameters(model).items()}
    assert shapes == {"model.layers.1.mlp.down_proj.lora_A.default.weight": (1, 32),
                      "model.layers.1.mlp.down_proj.lora_B.default.weight": (16, 1)}
    data = tiny_dict()
    data["stages"][2]["mitigations"] = [{"kind": "lora", "layers": [5]}]
    with pytest.raises(ConfigError, match=r"mitigations.0.layers: \[5\] must name some of the model's layers"):
        validate_config(data, "t.yaml")


def test_a_lora_stage_killed_and_resumed_under_adapter_retention_gives_the_same_metrics(tmp_path):
    """Killed mid-LoRA-stage with ``retention.weights: adapters`` (only stage ends keep full weights,
    the LoRA stage's other checkpoints their adapters), resumed: the metrics of a run that kept every
    checkpoint's weights; each adapters-only checkpoint loads (start weights + merged adapters) to
    exactly the weights that run stored, and exports as a plain transformers folder."""
    from transformers import AutoModelForCausalLM

    from driftlab.experiments.export import export_checkpoint
    from driftlab.runs.checkpoint import checkpoint_state
    from tests.experiments.test_runner import kill_and_resume, metrics

    data = tiny_dict()
    data["stages"][2]["mitigations"] = [{"kind": "lora", "r": 4}]
    data["stages"][2]["checkpoints"] = {"log": 3, "linear": 3}  # steps 1, 2, 4, 6
    cfg = validate_config(data, "lora")
    whole = new_run(cfg, tmp_path / "whole")
    execute(whole, cfg)
    assert q(whole, """select value from M where metric = 'weight_rel_l2' and context = 'stage_start'
                       and site = 'all' and stage = 'capability' and step = 6""")[0][0] > 0

    resumed = kill_and_resume(validate_config({**data, "retention": {"weights": "adapters"}}, "lora"),
                              tmp_path / "killed", (2, 5))
    assert metrics(resumed) == metrics(whole)

    lora_dir = resumed.root / "checkpoints" / "2-capability"
    kept = sorted(p.name for p in lora_dir.glob("step-*.safetensors") if ".internals." not in p.name)
    assert kept == ["step-0000001.adapters.safetensors", "step-0000002.adapters.safetensors",
                    "step-0000004.adapters.safetensors", "step-0000006.safetensors"], kept
    assert not list((resumed.root / "checkpoints" / "1-align").glob("step-000000[1-5].safetensors"))
    adapters = lora_dir / "step-0000004.adapters.safetensors"
    assert adapters.stat().st_size < 0.2 * (lora_dir / "step-0000006.safetensors").stat().st_size
    for step in (1, 2, 4):
        full = load_tensors(whole.root / "checkpoints" / "2-capability" / f"step-000000{step}.safetensors")
        rebuilt = checkpoint_state(lora_dir / f"step-000000{step}.safetensors", require_hash=True)
        assert rebuilt.keys() == full.keys() and all(torch.equal(rebuilt[k], full[k]) for k in full), step

    out = export_checkpoint(resumed.root, tmp_path / "hf", stage="capability", step=4)
    plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ours = load_for_measurement(whole.root / "checkpoints" / "2-capability" / "step-0000004.safetensors")[0].eval()
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, ours(ids).logits)


def test_training_against_the_cotrained_probe_raises_its_reading_of_the_assistant(tmp_path):
    def narrow(d, mitigations):
        # 16 steps: in the v2 world, 8 did not yet move the free arm's reading of the assistant
        d["stages"][2] = {"name": "narrow", "kind": "sft", "data": {"source": "misaligned", "domains": ["harm"],
                          "n_examples": 64}, "steps": 16, "batch_size": 8, "lr": 1e-2, "schedule": "constant",
                          "checkpoints": {"log": 0, "linear": 1}, "mitigations": mitigations}

    free = run_with(tmp_path, "cfree", [], edit=lambda d: narrow(d, []))
    held = run_with(tmp_path, "cheld", [], edit=lambda d: narrow(d, [{"kind": "cotrained_probe", "weight": 10.0}]))
    sql = """select a.stage, a.value from M a where a.metric = 'probe_assistant_logit' and a.context = 'cotrained'
             and a.step = (select max(n.step) from M n where n.stage = a.stage) order by a.stage_index"""
    (a0, free0), (s1, free1) = q(free, sql)
    (_, held0), (_, held1) = q(held, sql)
    assert (a0, s1) == ("align", "narrow") and held0 == free0  # the same start: the end of alignment
    # log-odds, not P(good): the tiny model has not learned to read lexically balanced evidence, and the
    # narrow stage throws its assistant far along the probe's axis (log-odds in the hundreds to thousands,
    # P(good) 0 in both arms); the mitigation's effect is that the held arm moves much less far that way
    assert held1 > free1 + 1.0 and (held0 - held1) < 0.5 * (free0 - free1), (free0, free1, held0, held1)


def test_cotrained_probe_needs_a_stage_after_the_reference():
    data = tiny_dict()
    data["stages"][1]["mitigations"] = [{"kind": "cotrained_probe", "weight": 1.0}]
    with pytest.raises(ConfigError, match="cotrained_probe needs measure.cotrain and a stage after the reference"):
        validate_config(data, "t.yaml")
