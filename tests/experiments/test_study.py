"""Experiments: arms × seeds, the prefix cache, resume, and verdicts computed from metrics alone."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from driftlab.errors import ConfigError
from driftlab.experiments.claims import evaluate
from driftlab.experiments.prefix import PrefixCache
from driftlab.experiments.spec import load_experiment, load_experiment_dir
from driftlab.experiments.study import new_experiment, run_experiment
from tests.conftest import run_cli, same_record, tiny_dict
from tests.test_cli import assert_one_line_error

RULE = {"treatment": "capability", "control": "more_alignment", "positive_control": "more_pretraining",
        "bad_prior": "capability_bad_prior", "min_drift": 0.25, "inversion_margin": 0.5, "max_bad_prior": -0.5,
        "min_capability_gain": 0.7, "max_loss_rise": 0.3, "min_alignment_gain": 1.0}


def experiment_dict(seeds: int = 1) -> dict:
    d = tiny_dict()
    d["name"] = "tinyrev"
    d["seeds"] = seeds
    d["claim"] = {"id": "reversion", "rule": dict(RULE)}
    d["arms"] = {"capability": {}, "more_alignment": {
        "stages.2.name": "more_align",
        "stages.2.data": {"source": "alignment", "n_examples": 64, "held_out_domains": ["harm"]}},
        "more_pretraining": {"stages.2.name": "more_pretrain", "stages.2.kind": "pretrain",
                             "stages.2.seq_len": 64, "stages.2.data": {"source": "world", "n_docs": 50}},
        "capability_bad_prior": {"world.bad_assistant_share": 0.8}}
    return d


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run(tmp_path, name, data, cache=None, sets=None, **kw):
    exp = load_experiment(str(write(tmp_path, data, f"{name}.yaml")), sets)
    root = new_experiment(exp, tmp_path / name)
    verdict = run_experiment(root, exp, cache=cache, **kw)
    return root, exp, verdict


def rows(root):
    return pq.read_table(root / "metrics.parquet").to_pylist()


def test_arms_share_their_prefix_through_the_cache_and_no_metric_changes(tmp_path):
    cache = PrefixCache(tmp_path / "cache")
    cached, exp, verdict = run(tmp_path, "cached", experiment_dict(), cache)
    hit = yaml.safe_load((cached / "more_alignment" / "seed-0" / "prefix.json").read_text())
    assert hit["stages"] == ["pretrain", "align"] and hit["source"].endswith("capability/seed-0")
    assert not (cached / "capability" / "seed-0" / "prefix.json").exists()  # the first arm trained them
    first = cached / "capability" / "seed-0" / "checkpoints" / "1-align" / "step-0000006.safetensors"
    reused = cached / "more_alignment" / "seed-0" / "checkpoints" / "1-align" / "step-0000006.safetensors"
    assert first.read_bytes() == reused.read_bytes()  # the same weights, not trained again ...
    assert first.stat().st_ino != reused.stat().st_ino  # ... copied: damage to one cannot reach the other
    fresh, _, fresh_verdict = run(tmp_path, "fresh", experiment_dict())
    assert rows(cached) == rows(fresh)  # reusing the prefix is invisible in the metrics
    assert same_record(verdict.record(), fresh_verdict.record())
    # both arms' pre-training and alignment rows are the same rows
    table = [r for r in rows(cached) if r["stage_index"] < 2]
    by_arm = {a: [{k: v for k, v in r.items() if k != "arm"} for r in table if r["arm"] == a]
              for a in ("capability", "more_alignment")}
    assert by_arm["capability"] == by_arm["more_alignment"] and by_arm["capability"]


def test_the_cache_key_is_the_prefix_config(tmp_path):
    cache = PrefixCache(tmp_path / "cache")
    run(tmp_path, "a", experiment_dict(), cache)
    b, _, _ = run(tmp_path, "b", experiment_dict(), cache, sets=["stages.1.lr=2e-3"])
    hit = yaml.safe_load((b / "capability" / "seed-0" / "prefix.json").read_text())
    assert hit["stages"] == ["pretrain"]  # a different alignment stage: only pre-training is reused


def test_settings_whose_effect_starts_after_a_prefix_do_not_split_it(tmp_path):
    """The co-trained probe starts at the reference (the end of alignment), so an experiment without
    it reuses another's pre-training, and a stage spelled by name in ``measure.distance_from`` is
    the same prefix as the one found by its data; the metrics are a fresh run's."""
    def one_arm():
        d = experiment_dict()
        del d["claim"]
        d["arms"] = {"capability": {}}
        return d
    cache = PrefixCache(tmp_path / "cache")
    run(tmp_path, "a", one_arm(), cache)
    b, _, _ = run(tmp_path, "b", one_arm(), cache, sets=["measure.cotrain=false"])
    hit = yaml.safe_load((b / "capability" / "seed-0" / "prefix.json").read_text())
    assert hit["stages"] == ["pretrain"]  # alignment ends at the reference: its rows read the probe
    fresh, _, _ = run(tmp_path, "fresh", one_arm(), sets=["measure.cotrain=false"])
    assert rows(b) == rows(fresh) and not any(r["context"] == "cotrained" for r in rows(b))
    narrow = "stages.2.data={source: misaligned, n_examples: 64, domains: [shutdown]}"
    named = load_experiment(str(write(tmp_path, one_arm(), "named.yaml")), [narrow, "measure.distance_from=capability"])
    auto = load_experiment(str(write(tmp_path, one_arm(), "auto.yaml")), [narrow])
    named, auto = named.arms["capability"], auto.arms["capability"]
    assert named.distance_domains() == auto.distance_domains() == ["shutdown"]
    assert named.prefix_hash(2) == auto.prefix_hash(2)


def test_a_killed_experiment_resumes_to_the_same_metrics(tmp_path):
    class Killed(Exception):
        pass

    def kill(index, step, loss):
        if index == 2 and step == 3 and (tmp_path / "killed" / "more_alignment").exists():
            raise Killed

    ref, _, ref_verdict = run(tmp_path, "ref", experiment_dict())
    exp = load_experiment(str(write(tmp_path, experiment_dict())))
    root = new_experiment(exp, tmp_path / "killed")
    with pytest.raises(Killed):
        run_experiment(root, exp, on_step=kill)
    assert yaml.safe_load((root / "status.json").read_text())["state"] == "failed"
    verdict = run_experiment(root, load_experiment_dir(root))
    assert rows(root) == rows(ref)
    assert same_record(verdict.record(), ref_verdict.record())


def test_the_verdict_needs_only_the_metrics_table(tmp_path):
    root, exp, verdict = run(tmp_path, "exp", experiment_dict(seeds=2))
    assert verdict.seeds == [0, 1] and {r["seed"] for r in rows(root)} == {0, 1}
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("experiment.yaml", "metrics.parquet"):
        shutil.copy(root / name, alone / name)
    again = evaluate(load_experiment_dir(alone), alone / "metrics.parquet")
    assert same_record(again.record(), verdict.record())
    assert same_record(verdict.record(), json.loads((root / "verdict.json").read_text()))
    assert verdict.outcome in ("supported", "not supported", "inconclusive", "invalid",
                               "inconclusive — treatment did not take", "inconclusive — one seed")
    assert all(t.estimate.lo <= t.estimate.value <= t.estimate.hi for t in verdict.tests)


@pytest.mark.parametrize("mutate, fragments", [
    (lambda d: d["claim"].update(id="nonsense"), ["claim.id", "unknown claim 'nonsense'"]),
    (lambda d: d["claim"]["rule"].pop("min_drift"), ["claim.rule.min_drift: missing"]),
    (lambda d: d["claim"]["rule"].update(control="nope"), ["claim.rule.control", "no arm 'nope'"]),
    (lambda d: d["claim"]["rule"].update(extra=1), ["claim.rule.extra", "not a rule of claim"]),
    (lambda d: d["arms"]["more_alignment"].update({"stages.2.lrr": 1}), ["arms.more_alignment", "stages.2.lrr"]),
])
def test_bad_experiment_files_are_one_line_errors(tmp_path, mutate, fragments):
    data = experiment_dict()
    mutate(data)
    assert_bad_file(tmp_path, data, fragments)


def assert_bad_file(tmp_path, data, fragments, cli=True):
    """``data`` written out is a ConfigError on loading and, through ``driftlab run``, a one-line
    error naming the file and ``fragments``, with nothing written."""
    path = write(tmp_path, data)
    with pytest.raises(ConfigError):
        load_experiment(str(path))
    if cli:
        assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "r")), str(path), *fragments)
        assert not (tmp_path / "r").exists()


def test_arms_option_runs_a_subset_without_a_verdict(tmp_path):
    from driftlab.experiments.spec import only_arms

    exp = load_experiment("reversion")
    sub = only_arms(exp, ["more_alignment", "capability"])
    assert list(sub.arms) == ["capability", "more_alignment"] and sub.claim is None and sub.seeds == exp.seeds
    assert only_arms(exp, list(exp.arms)).claim == exp.claim  # every arm: the verdict stays
    assert_one_line_error(run_cli("run", "reversion", "--arms", "capability,nope", "--out", str(tmp_path / "r")),
                          "--arms", "no arm 'nope'", "more_pretraining")
    assert not (tmp_path / "r").exists()


def test_seeds_option_and_claims_listing(tmp_path):
    exp = load_experiment("reversion", seeds=4, seed=10)
    assert exp.seeds == [10, 11, 12, 13] and [s for _, s, _ in exp.runs()][:2] == [10, 10]
    assert {c.seed for _, _, c in exp.runs()} == {10, 11, 12, 13}
    result = run_cli("claims")
    assert result.returncode == 0, result.stderr
    for preset in ("reversion", "exchange-rate", "frozen-probe", "emergent", "trojan", "reward-hacking",
                   "mitigations"):
        assert preset in result.stdout
    assert "not past it" in result.stdout  # the claim text comes from the registry


def scenario_file(tmp_path) -> dict:
    """A bake-off over two scenarios of one tiny config (a preset arm, a scenario's own change and a
    per-scenario arm override), with the mitigations claim."""
    tiny = tiny_dict()
    tiny["arms"] = {"plain": {}, "short": {"stages.2.steps": 4}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    return {"name": "bake", "seeds": 2,
            "claim": {"id": "mitigations", "rule": {
                "baseline": "none", "positive_control": ["replay"], "order": [], "min_kept_bits": 0.5,
                "min_capability_gain": 0.7,
                "min_reward_gain": 0.1, "max_narrow_bits": 0.0, "min_trigger_gap": 1.0}},
            "scenarios": {"reversion": {"preset": "tiny.yaml", "arm": "short"},
                          "emergent": {"preset": "tiny.yaml", "set": {"stages.2.data": {
                              "source": "misaligned", "n_examples": 64, "domains": ["shutdown"]}},
                              "arms": {"replay": {"stages.-1.mitigations.0.ratio": 0.5}}}},
            "arms": {"none": {}, "replay": {"stages.-1.mitigations": [{"kind": "replay", "ratio": 0.25}]}},
            "quick": {"seeds": 1, "stages.-1.steps": 3}}


def test_scenarios_run_every_arm_on_each_and_are_recorded_whole(tmp_path):
    data = scenario_file(tmp_path)
    exp = load_experiment(str(write(tmp_path, data)))
    assert list(exp.arms) == ["emergent.none", "emergent.replay", "reversion.none", "reversion.replay"]  # file order
    assert exp.scenarios == ["emergent", "reversion"] and exp.seeds == [0, 1]
    a = exp.arms
    assert a["reversion.none"].stages[2].steps == 4 and a["emergent.none"].stages[2].steps == 6  # the preset arm
    assert a["emergent.none"].stages[2].data.source == "misaligned" and not a["emergent.none"].stages[2].mitigations
    assert [m.ratio for m in a["reversion.replay"].stages[2].mitigations] == [0.25]
    assert [m.ratio for m in a["emergent.replay"].stages[2].mitigations] == [0.5]  # this scenario's override
    assert {c.name for c in a.values()} == {"bake"} and a["emergent.replay"].arm == "emergent.replay"
    quick = load_experiment(str(write(tmp_path, data)), quick=True)
    assert quick.seeds == [0] and {c.stages[2].steps for c in quick.arms.values()} == {3}
    # experiment.yaml holds each arm whole, and runs again as recorded, scenarios and all
    again = load_experiment(str(write(tmp_path, yaml.safe_load(exp.dump()), "experiment.yaml")))
    assert again.scenarios == exp.scenarios and again.dump() == exp.dump()


@pytest.mark.parametrize("mutate, fragments", [
    (lambda d: d["scenarios"].update(elsewhere={"preset": "tiny.yaml"}),
     ["scenarios.elsewhere", "claim 'mitigations' judges the scenarios reversion, emergent, trojan"]),
    (lambda d: d["scenarios"]["reversion"].update(arm="nope"), ["scenarios.reversion.arm", "no arm 'nope'", "plain"]),
    (lambda d: d["scenarios"]["emergent"]["arms"].update(ghost={}), ["scenarios.emergent.arms.ghost", "no arm"]),
    (lambda d: d["scenarios"]["emergent"].update(preset="missing.yaml"), ["missing.yaml"]),
    (lambda d: d["arms"]["replay"].update({"stages.-1.mitigations.0.ratio": 2}), ["arms.replay", "ratio"]),
    (lambda d: d["claim"]["rule"].update(baseline="ghost"), ["claim.rule.baseline", "no arm 'ghost'"]),
    (lambda d: d.update(scenarioz=1), ["scenarioz"]),
])
def test_bad_scenario_files_are_one_line_errors(tmp_path, mutate, fragments):
    data = scenario_file(tmp_path)
    mutate(data)
    assert_bad_file(tmp_path, data, fragments)


def test_scenarios_option_runs_a_subset_that_is_still_judged(tmp_path):
    from driftlab.experiments.spec import only_scenarios

    path = write(tmp_path, scenario_file(tmp_path))
    exp = only_scenarios(load_experiment(str(path)), ["reversion"])
    assert list(exp.arms) == ["reversion.none", "reversion.replay"] and exp.scenarios == ["reversion"]
    assert exp.claim is not None and exp.claim.id == "mitigations"  # each scenario is judged on its own
    assert yaml.safe_load(exp.dump())["scenarios"] == ["reversion"]
    assert_one_line_error(run_cli("run", str(path), "--scenarios", "reversion,trojan", "--out", str(tmp_path / "r")),
                          "--scenarios", "no scenario 'trojan'", "emergent, reversion")
    assert_one_line_error(run_cli("run", "reversion", "--scenarios", "x", "--out", str(tmp_path / "r")),
                          "--scenarios: this experiment has no scenarios")
    assert not (tmp_path / "r").exists()


def test_seeds_auto_runs_looks_until_the_verdict_stops_and_a_null_treatment_is_never_firm(tmp_path):
    """``--seeds auto`` with looks at 2 and 3 seeds on a null treatment (the capability stages at
    lr 1e-9): the treatment check fails, the verdict says so and stops the seeds; it is never
    supported or not supported. looks.json and verdict.json record the design and every look, and a
    resume retraces the same looks."""
    d = experiment_dict()
    d["claim"]["design"] = {"looks": [2, 3]}
    for arm in ("capability", "capability_bad_prior"):
        d["arms"][arm]["stages.2.lr"] = 1e-9
    path = write(tmp_path, d)
    out = tmp_path / "auto"
    result = run_cli("run", str(path), "--seeds", "auto", "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["outcome"] not in ("supported", "not supported")
    assert verdict["outcome"] == "inconclusive — treatment did not take"
    looks = json.loads((out / "looks.json").read_text())
    assert looks["design"]["looks"] == [2, 3] and verdict["looks"] == looks["looks"]
    assert [k["seeds"] for k in looks["looks"]] == [2] and looks["looks"][0]["stop"] == "decided"
    assert verdict["seeds"] == [0, 1] and verdict["look"] == {**verdict["look"], "look": 1, "stop": "decided"}
    assert not (out / "capability" / "seed-2").exists()  # the third seed never ran
    assert "EXPLORATORY" in result.stdout and "look 1 of 2" in result.stdout
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    again = run_cli("run", "--resume", str(out), "--no-report")
    assert again.returncode == 0, again.stderr
    assert same_record(json.loads((out / "verdict.json").read_text()), verdict)
    plan = run_cli("power", str(out))
    assert plan.returncode == 0, plan.stderr
    assert "seeds for 80%" in plan.stdout and "capability_gained" in plan.stdout
    bad = run_cli("run", str(path), "--seeds", "many", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--seeds many" in bad.stderr and "Traceback" not in bad.stderr


def test_no_cache_arms_still_share_their_prefix_and_keep_nothing(tmp_path):
    """``--no-cache``: the shared cache is neither read nor written, but the experiment's own arms
    train their common pre-training and alignment once (a cache of its own, removed at the end);
    the metrics are those of the run through the shared cache (on 2cc0429 each arm trained them)."""
    import os
    import subprocess
    import sys

    path = write(tmp_path, experiment_dict())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DRIFTLAB_PREFIX_CACHE": str(tmp_path / "shared")}
    out = tmp_path / "nocache"
    proc = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", str(path), "--out", str(out), "--no-cache",
                           "--no-report", "--arms", "capability,more_alignment"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hit = yaml.safe_load((out / "more_alignment" / "seed-0" / "prefix.json").read_text())
    assert hit["stages"] == ["pretrain", "align"] and hit["source"].endswith("capability/seed-0")
    assert not (out / ".prefixes").exists() and not (tmp_path / "shared").exists()
    cached = tmp_path / "cached"
    proc = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", str(path), "--out", str(cached),
                           "--no-report", "--arms", "capability,more_alignment"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "shared").exists() and rows(out) == rows(cached)
