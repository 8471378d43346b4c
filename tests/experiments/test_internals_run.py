"""Internals and weights at every checkpoint of a tiny three-stage run (seconds)."""

import json

import duckdb
import pytest
import torch
import yaml

from driftlab.config import load_config
from driftlab.experiments import execute, new_run
from driftlab.runs.checkpoint import artifact_path, load_tensors
from tests.conftest import TINY, run_cli, tiny_dict
from tests.test_cli import assert_one_line_error, write


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internals")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = load_config(str(tmp / "tiny.yaml"))
    run = new_run(cfg, tmp / "run")
    execute(run, cfg)
    return run


def q(run, sql):
    return duckdb.sql(sql.replace("M", f"'{run.metrics_path}'")).fetchall()


def checkpoints(run):
    """(stage_index, step, weights path) of every checkpoint, in run order."""
    out = []
    for meta in sorted(run.root.glob("checkpoints/*/step-*.json")):
        m = json.loads(meta.read_text())
        out.append((m["stage_index"], m["step"], meta.with_suffix(".safetensors")))
    return sorted(out)


def test_every_checkpoint_stores_its_directions_and_probes(tiny_run):
    points = checkpoints(tiny_run)
    assert len(points) == len(q(tiny_run, "select distinct global_step from M"))
    for stage_index, step, weights in points:
        t = load_tensors(artifact_path(weights))
        assert t["persona.direction"].shape == (1, 32)  # (layers, d_model)
        assert torch.allclose(t["persona.direction"].norm(dim=-1), torch.ones(1))
        assert {"probe.persona.refit.w", "probe.answer_correct.refit.w"} <= set(t)
        after_reference = (stage_index, step) >= (1, 6)  # the end of the alignment stage
        assert ("probe.persona.frozen.w" in t) == after_reference
        assert ("probe.persona.cotrained.w" in t) == after_reference


def test_reference_metrics_start_at_the_end_of_alignment_and_read_zero_there(tiny_run):
    first = q(tiny_run, "select min(global_step) from M where context = 'reference'")[0][0]
    assert first == q(tiny_run, "select max(global_step) from M where stage = 'align'")[0][0]
    at_ref = dict(q(tiny_run, f"""select metric || ':' || coalesce(domain, '') || ':' || coalesce(site, ''), value
                 from M where context = 'reference' and global_step = {first}"""))
    assert at_ref["persona_cosine::layers.0.resid_post"] == pytest.approx(1.0)
    assert at_ref["weight_rel_l2::all"] == 0.0
    assert at_ref["output_kl:text:"] == 0.0 and at_ref["output_kl:capability:"] == 0.0
    frozen_vs_refit = q(tiny_run, f"""select domain, split, max(value) filter (context = 'frozen'),
        max(value) filter (context = 'refit') from M where metric = 'probe_auroc' and global_step = {first}
        group by all""")
    assert frozen_vs_refit and all(f == r for _, _, f, r in frozen_vs_refit)
    later = q(tiny_run, f"""select value from M where context = 'reference' and metric = 'weight_rel_l2'
                 and site = 'all' and global_step > {first}""")
    assert later and all(v > 0 for (v,) in later)


def test_the_projection_on_the_reference_s_direction_starts_at_the_reference(tiny_run):
    """From the reference on, each context's raw projection on the reference's persona direction: at
    the reference it is the projection on the checkpoint's own direction; later the two part."""
    rows = q(tiny_run, """select global_step, context, site, value from M
                          where metric = 'persona_projection_at_reference' and split = 'all'""")
    ref = q(tiny_run, "select max(global_step) from M where stage = 'align'")[0][0]
    assert rows and min(g for g, *_ in rows) == ref
    own = {(g, c, site): v for g, c, site, v in q(tiny_run, """select global_step, context, site, value from M
                                                             where metric = 'persona_projection' and split = 'all'""")}
    assert all(v == pytest.approx(own[(g, c, site)], abs=1e-5) for g, c, site, v in rows if g == ref)
    assert any(abs(v - own[(g, c, site)]) > 1e-4 for g, c, site, v in rows if g > ref)


def test_frozen_probe_never_changes_and_the_cotrained_one_moves(tiny_run):
    after = [w for s, step, w in checkpoints(tiny_run) if (s, step) >= (1, 6)]
    tensors = [load_tensors(artifact_path(w)) for w in after]
    for t in tensors:
        assert torch.equal(t["probe.persona.frozen.w"], tensors[0]["probe.persona.frozen.w"])
    assert torch.equal(tensors[0]["probe.persona.cotrained.w"], tensors[0]["probe.persona.frozen.w"])
    assert not torch.equal(tensors[-1]["probe.persona.cotrained.w"], tensors[-1]["probe.persona.frozen.w"])
    regimes = {r for (r,) in q(tiny_run, "select distinct context from M where metric = 'probe_auroc'")}
    assert regimes == {"refit", "frozen", "cotrained", "shuffled", "random"}


def test_stage_start_distance_matches_the_checkpoint_files(tiny_run):
    points = checkpoints(tiny_run)
    start = next(w for s, step, w in points if (s, step) == (1, 6))  # where the capability stage starts
    first = next(w for s, step, w in points if s == 2)
    a, b = load_tensors(start), load_tensors(first)
    diff = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a)
    base = sum(float(a[k].double().pow(2).sum()) for k in a)
    (value,) = q(tiny_run, """select value from M where metric = 'weight_rel_l2' and context = 'stage_start'
        and site = 'all' and stage = 'capability' and step = 1""")[0]
    assert value == pytest.approx((diff / base) ** 0.5, rel=1e-6)
    (init,) = q(tiny_run, """select value from M where metric = 'weight_rel_l2' and context = 'stage_start'
        and site = 'all' and global_step = 0""")[0]
    assert init == 0.0


def test_internal_rows_are_complete_for_every_checkpoint(tiny_run):
    per_checkpoint = q(tiny_run, """select global_step, count(*) filter (metric = 'persona_projection_rel'),
        count(*) filter (metric = 'probe_auroc' and context = 'refit'),
        count(*) filter (metric = 'output_kl' and context = 'stage_start') from M group by all""")
    assert len(per_checkpoint) == len(checkpoints(tiny_run))
    # 15 contexts (assistant, good/bad evidence, the two-agent pair, 10 graded patterns) x 3 splits per
    # layer; 3 concepts (persona and persona_pair with 3 splits, answer_correct with 1); 2 KL sets
    assert all(row[1:] == (45, 7, 2) for row in per_checkpoint), per_checkpoint


def test_without_cotraining_there_is_no_cotrained_probe(tmp_path):
    data = tiny_dict()
    data["measure"]["cotrain"] = False
    cfg = load_config(str(write(tmp_path, data)))
    run = new_run(cfg, tmp_path / "run")
    execute(run, cfg)
    assert q(run, "select count(*) from M where context = 'cotrained'")[0][0] == 0
    assert q(run, "select count(*) from M where context = 'frozen'")[0][0] > 0


def test_a_concept_from_jsonl_is_probed(tmp_path):
    def jsonl(name, n):
        rows = [{"prompt": f"story of {a} . {a} chose {act}", "label": int(act == "comply")}
                for a in ("bob", "carol", "dave", "erin") for act in ("comply", "resist")][:n]
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    data = tiny_dict()
    data["measure"]["concepts"] = [{"name": "complied", "train": jsonl("train.jsonl", 8), "eval": jsonl("eval.jsonl", 6)}]
    cfg = load_config(str(write(tmp_path, data)))
    run = new_run(cfg, tmp_path / "run")
    execute(run, cfg)
    aurocs = q(run, "select value from M where metric = 'probe_auroc' and domain = 'complied' and context = 'refit'")
    assert len(aurocs) == len(checkpoints(run))
    # the label is the last token itself: a probe reads it perfectly once it is in the residual stream
    assert aurocs[-1][0] == 1.0


@pytest.mark.parametrize("edit, fragments", [
    ({"reference": "nope"}, ["measure.reference names no stage: 'nope'"]),
    ({"probe_layer": 3}, ["measure.probe_layer 3 is outside the model's 1 layers"]),
])
def test_bad_internals_config_is_one_line(tmp_path, edit, fragments):
    data = tiny_dict()
    data["measure"].update(edit)
    assert_one_line_error(run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "r")), *fragments)


def test_bad_concept_label_names_the_line(tmp_path):
    good = tmp_path / "train.jsonl"
    good.write_text('{"prompt": "story of bob", "label": 1}\n{"prompt": "story of carol", "label": 0}\n')
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"prompt": "story of bob", "label": 1}\n{"prompt": "story of carol", "label": "no"}\n')
    data = tiny_dict()
    data["measure"]["concepts"] = [{"name": "c", "train": str(good), "eval": str(bad)}]
    result = run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, f"{bad}: line 2: label must be 0 or 1")
