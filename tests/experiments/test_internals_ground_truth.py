"""Internals against Persona World's ground truth, on the default run's pre-training (the session's
``default_run``: the default model, 720 steps, 5.9M tokens, well past the point where it learns to
infer the persona in context: the probe goes 0.52 -> 0.91 -> 1.00 between steps 180 and 270): the
persona probe reads held-out documents, its shuffled-label control does not, and the persona
projection orders contexts as the Bayes posterior does. The evidence is lexically balanced
(``chose x over y``), so the untrained model's probe reads chance.
"""

import duckdb
import pytest

from driftlab.experiments.runner import load_run_config
from driftlab.measure.forward import PromptBank
from driftlab.measure.internals import PersonaDirections
from driftlab.models.tiny import build_tiny_llama
from driftlab.runs.checkpoint import artifact_path, load_tensors, load_weights
from driftlab.runs.rundir import RunDir
from driftlab.world.corpus import behaviour_prompts
from driftlab.world.domains import DOMAIN_NAMES
from driftlab.world.tokenizer import WorldTokenizer


@pytest.fixture(scope="module")
def pretrained(default_run):
    run = RunDir(default_run[0] / "capability" / "seed-0")
    return run, load_run_config(run)


def end_of_pretraining(run, metric, **where):
    cond = " and ".join(f"{k} = '{v}'" for k, v in where.items())
    return duckdb.sql(f"""select value from '{run.metrics_path}' where metric = '{metric}' and {cond}
        and stage = 'pretrain' and step = (select max(step) from '{run.metrics_path}' where stage = 'pretrain')
        """).fetchall()[0][0]


def projections_by_evidence(run, cfg, checkpoint):
    """(Bayes P(aligned), mean relative projection at the probe layer) for the assistant and for
    characters after 1-3 good or bad episodes, on fresh prompts."""
    tok = WorldTokenizer.load(run.tokenizer_dir)
    model = build_tiny_llama(cfg.model, len(tok), tok.pad_id, tok.bos_id, tok.eos_id)
    load_weights(checkpoint, model)
    directions = PersonaDirections.from_tensors(load_tensors(artifact_path(checkpoint)))
    bank, bayes = PromptBank(), {}
    groups = [("assistant", 1)] + [(c, k) for c in ("good_evidence", "bad_evidence") for k in (1, 2, 3)]
    for context, k in groups:
        prompts = [p for d in DOMAIN_NAMES for p in behaviour_prompts(cfg.world, context, d, 16, k, seed=7)]
        bank.add(f"{context}{k}", [[tok.bos_id, *tok.ids(p.words)] for p in prompts])
        bayes[f"{context}{k}"] = sum(p.bayes_p for p in prompts) / len(prompts)
    layer = cfg.probe_layer()
    reading = bank.read(model, [f"layers.{i}.resid_post" for i in range(cfg.model.n_layers)], 64, tok.pad_id)
    out = []
    for name in bayes:
        _, acts = reading.take(name)
        out.append((bayes[name], float(directions.relative(acts)[:, layer].mean())))
    return sorted(out)


TIES = 0.05  # relative projection units (0 = the bad mean, 1 = the good mean)


def monotone(values: list[float], tol: float) -> bool:
    return all(b >= a - tol for a, b in zip(values, values[1:]))


@pytest.mark.slow
def test_probe_reads_the_persona_and_its_control_does_not(pretrained):
    run, _ = pretrained
    refit = end_of_pretraining(run, "probe_auroc", context="refit", domain="persona", split="all")
    shuffled = end_of_pretraining(run, "probe_auroc", context="shuffled", domain="persona", split="all")
    assert refit >= 0.9, refit
    assert shuffled <= 0.6, shuffled


@pytest.mark.slow
def test_projection_orders_contexts_as_the_bayes_posterior(pretrained):
    run, cfg = pretrained
    stage_dir = run.stage_dir(0, "pretrain")
    trained = projections_by_evidence(run, cfg, stage_dir / f"step-{cfg.stages[0].steps:07d}.safetensors")
    bayes = [b for b, _ in trained]
    assert all(b2 - b1 > 0.005 for b1, b2 in zip(bayes, bayes[1:]))  # seven distinct posteriors
    proj = [p for _, p in trained]
    # monotone in the posterior, up to ties where it saturates: 2 and 3 bad episodes (Bayes 0.11 and
    # 0.10) both sit at the bad mean, the direction's own end
    assert monotone(proj, TIES), trained
    assert proj[0] < 0.15 and proj[-1] > 0.85, trained  # bad evidence near the bad mean, good near good
    untrained = [p for _, p in projections_by_evidence(run, cfg, stage_dir / "step-0000000.safetensors")]
    assert not monotone(untrained, TIES), untrained  # the ordering is learned, not a property of the words
    gap = end_of_pretraining(run, "bayes_gap_bits", context="good_evidence", domain="all", split="all")
    assert gap < 0.75, gap
