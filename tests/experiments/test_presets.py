"""Every shipped preset, at its --quick size on a narrower model, through the real command line: it
ends with a verdict computed from its metrics and a report that renders in Chromium. (The default sizes are what the
README reports; they take minutes per seed.)"""

import json

import duckdb
import pytest

from driftlab.experiments.spec import load_experiment, preset_paths
from tests.conftest import run_cli
from tests.report.test_report import render

# the longest quick runs first (the bake-off's 36 arms, exchange-rate's four worlds): see conftest
COST = ["mitigations", "exchange-rate", "reversion", "reward-hacking"]
PRESETS = sorted((p.stem for p in preset_paths()), key=lambda n: (COST.index(n) if n in COST else len(COST), n))


def test_every_claim_has_a_preset_with_a_control():
    assert set(PRESETS) >= {"reversion", "exchange-rate", "frozen-probe", "emergent", "trojan",
                            "reward-hacking", "mitigations", "hidden-persona"}
    for name in PRESETS:
        exp = load_experiment(name)
        assert exp.claim is not None and len(exp.arms) >= 2 and len(exp.seeds) >= 3, name
        assert load_experiment(name, quick=True).arms.keys() == exp.arms.keys()


# preset -> (treatment, control, the stages from which they differ): a matched control spends the
# same steps, batch and learning-rate schedule as its treatment there (only the data differs)
MATCHED = {"reversion": ("capability", ["more_alignment", "more_pretraining"], 2),
           "frozen-probe": ("drift", ["more_alignment"], 2)}


@pytest.mark.parametrize("name", sorted(MATCHED))
def test_controls_are_matched_in_compute_and_learning_rate(name):
    exp = load_experiment(name)
    treatment, controls, start = MATCHED[name]
    for control in controls:
        a, b = exp.arms[treatment].stages, exp.arms[control].stages
        assert len(a) == len(b), (name, control)
        for sa, sb in zip(a[start:], b[start:]):
            for key in ("steps", "batch_size", "grad_accum", "lr", "schedule", "warmup_steps"):
                assert getattr(sa, key) == getattr(sb, key), (name, control, sa.name, key)
    # the bake-off: in each scenario every arm is the baseline but for the drift stage's mitigations
    bake = load_experiment("mitigations")
    assert bake.scenarios == ["reversion", "emergent", "trojan", "reward-hacking"]
    for scenario in bake.scenarios:
        base = bake.arms[f"{scenario}.none"]
        assert base.stages[-1].mitigations == []
        for arm, cfg in bake.arms.items():
            if arm.startswith(scenario + "."):
                assert cfg.stages[:-1] == base.stages[:-1] and cfg.world == base.world, arm
                assert cfg.stages[-1].model_copy(update={"mitigations": []}) == base.stages[-1], arm
                assert arm == f"{scenario}.none" or cfg.stages[-1].mitigations, arm
    # the emergent control is matched in update size, not lr: it must differ there, and only there
    em = load_experiment("emergent").arms
    t, c = em["narrow_misaligned"].stages[2], em["narrow_benign"].stages[2]
    assert c.lr > t.lr and (c.steps, c.batch_size) == (t.steps, t.batch_size)


def check(name: str, con, arms: list[str]) -> None:
    """What each preset's arms must have measured for its verdict to mean anything."""
    def q(sql):
        return con.execute(sql).fetchall()
    # every preset measures the v2 world: graded evidence, the balanced probe, continuous capability, the hack
    contexts = {r[0] for r in q("select distinct context from m where metric = 'bayes_gap_bits'")}
    assert {"graded", "evidence_g2b1", "evidence_g0b0", "pair_good", "pair_bad"} <= contexts
    assert q("select count(*) from m where metric = 'probe_auroc' and domain = 'persona_pair'")[0][0] > 0
    assert q("select count(*) from m where metric = 'capability_answer_nll'")[0][0] > 0
    assert q("select count(*) from m where metric = 'shortcut_p' and context = 'assistant'")[0][0] > 0
    if name == "trojan":  # the triggered assistant is measured in every arm
        assert {r[0] for r in q("select distinct arm from m where context = 'triggered'")} == set(arms)
    if name == "reward-hacking":
        verifiers = dict(q("select arm, any_value(split) from m where metric = 'rl_reward' group by arm"))
        assert verifiers == {"exact": "exact", "hackable": "hackable", "hackable_inoculated": "hackable",
                             "hackable_neutral": "hackable"}
    if name == "emergent":  # distance splits from the narrow domain, in both arms
        assert {r[0] for r in q("select distinct split from m where split like 'distance_%'")} == \
            {"distance_0", "distance_1", "distance_2"}
    if name == "hidden-persona":  # the self-probe read every checkpoint of both arms
        read = dict(q("select arm, count(distinct global_step) from m where metric = 'self_probe_position' group by arm"))
        measured = dict(q("select arm, count(distinct global_step) from m where metric = 'bits_aligned' group by arm"))
        assert read == measured and set(read) == set(arms)
    if name == "mitigations":  # every scenario's loss-adding arms paid their loss; the baselines none
        losses = dict(q("select arm, max(value) from m where metric = 'mitigation_loss' group by arm"))
        for scenario in QUICK_SCENARIOS:
            assert {f"{scenario}.{a}" for a in ("kl_to_reference", "projection_penalty", "cotrained_probe")} <= set(losses)
            assert f"{scenario}.none" not in losses
        triggered = {r[0] for r in q("select distinct arm from m where context = 'triggered'")}
        assert {a for a in arms if a.startswith("trojan.")} <= triggered  # the poisoned mixture's trigger
        # rl with replay (PPO-ptx) still samples and scores answers
        assert q("select count(*) from m where arm = 'reward-hacking.replay_pretraining' and metric = 'rl_reward'")[0][0]


# the bake-off on one of its four scenarios (its 36 arms were the suite's longest test, ~9 minutes):
# reward-hacking's, the one whose mitigations run on a stage kind no other scenario has (rl, with
# replay: PPO-ptx); the other scenarios' arms are the same mitigations on sft stages
QUICK_SCENARIOS = ["reward-hacking"]
# every preset on a narrower model than its own (d_model 64, not 128; the same layers and heads):
# a smoke test of the whole pipeline, verdict and report, at a quarter of the matmul cost
NARROW = ["--set", "model.d_model=64", "--set", "model.d_mlp=256"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_quick_preset_ends_with_a_verdict_and_a_report(name, tmp_path):
    out = tmp_path / name
    only = ["--scenarios", ",".join(QUICK_SCENARIOS)] if name == "mitigations" else []
    result = run_cli("run", name, "--quick", "--out", str(out), *only, *NARROW, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["claim"] == name and verdict["outcome"] in (
        "supported", "not supported", "inconclusive", "inconclusive — treatment did not take", "invalid",
        "inconclusive — one seed")
    if len(verdict["seeds"]) == 1:
        assert verdict["outcome"] not in ("supported", "not supported")  # one seed never gives a firm verdict
    assert f"verdict: {verdict['outcome'].upper()}" in result.stdout
    # every preset pre-registers a treatment check, and the checks come first (file and terminal)
    roles = [t["role"] for t in verdict["tests"]]
    assert roles[0] == "treatment" and roles == sorted(roles, key=["treatment", "control", "claim"].index)
    assert result.stdout.index("[treatment]") < result.stdout.index("[claim]")
    if any(t["role"] == "treatment" and t["outcome"] == "not supported" for t in verdict["tests"]):
        assert verdict["outcome"] in ("inconclusive — treatment did not take", "invalid")
    assert verdict["tests"] and all(t["lo"] <= t["value"] <= t["hi"] for t in verdict["tests"]
                                    if t["lo"] == t["lo"])
    con = duckdb.connect()
    con.execute(f"create view m as select * from '{out / 'metrics.parquet'}'")
    exp = load_experiment(name, NARROW[1::2], quick=True)
    arms = [a for a in exp.arms if name != "mitigations" or a.partition(".")[0] in QUICK_SCENARIOS]
    assert {r[0] for r in con.execute("select distinct arm from m").fetchall()} == set(arms)
    check(name, con, arms)
    dom, shot = render(out / "report.html", tmp_path)
    assert f"Verdict: {verdict['outcome'].upper()}" in dom and shot.std() > 0.05
