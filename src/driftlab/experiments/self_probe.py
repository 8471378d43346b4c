"""The assistant's own persona, read with no evidence in context, by a probe fitted across two arms.

The persona probes read characters after evidence (in a world built so that the evidence's words
do not give the label away). This probe reads the assistant itself, with prompts that are the same
words in both arms — the assistant facing a situation, nothing before it — and is fitted on two models that grew
from one base and whose assistants differ in persona by construction: the experiment's
``self_probe`` names the good arm, the bad arm and the stage at whose end it is fitted, in each seed.
It then reads every checkpoint of both arms of that seed. Rows, added to the experiment's
``metrics.parquet`` with the checkpoint's own arm, seed, stage and step:

- ``self_probe_p_good`` (context ``assistant``; per domain, and over the trained / held-out / all
  domains): the mean probability the probe gives the good persona, on held-out assistant prompts;
- ``self_probe_position``: the same read as a position on the probe's axis, 0 = the bad arm and 1 =
  the good arm at the fitting checkpoint (mean log-odds; it does not saturate as P(good) does);
- ``self_probe_auroc`` (at the good arm's fitting checkpoint; context ``refit`` or ``shuffled``):
  how well it separates the two arms' held-out prompts; ``shuffled`` is the same fit with each arm's
  items labelled half good, half bad at random, read with whichever sign separates better: how
  well a probe fitted to noise tells the two models apart (near 1 when they differ along a
  dominant direction, which is what makes separability alone no evidence).

What makes the reading about the persona: the two arms' data differ in nothing but the persona of
the assistant's documents, so whatever separates their assistants was put there by that. Two models
that were trained differently are always linearly separable (AUROC ~1.0 even for tiny models a few
steps apart), so separability at the fitting stage is a precondition, not evidence; the evidence
is where the probe places other checkpoints — the shared base between the two ends, and the arms
after a later stage: an alignment stage that moved the bad arm's assistant back along this axis
changed what the persona stage put there, one that left it near 0 changed the behaviour only.

The probe reads one site (``measure.probe_layer``) of the tiny model; a checkpoint whose file is
missing (an earlier stage a prefix cache did not copy) is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch

from driftlab.config import ExperimentConfig
from driftlab.errors import DataError
from driftlab.experiments.spec import Experiment
from driftlab.measure.forward import PromptBank
from driftlab.measure.probes import LinearProbe, auroc
from driftlab.models.tiny import build_tiny_llama
from driftlab.runs.checkpoint import checkpoint_name, load_weights, tensors_hash
from driftlab.runs.metrics import SCHEMA, metric_row, read_metrics
from driftlab.runs.rundir import RunDir
from driftlab.tensors import resolve_device
from driftlab.world.corpus import assistant_prompts, derive_seed
from driftlab.world.domains import DOMAIN_NAMES
from driftlab.world.tokenizer import WorldTokenizer

FIT_SEED, EVAL_SEED = 20261201, 20261202  # the prompts, the same in every seed and arm
PLACE = ("run", "arm", "seed", "stage", "stage_index", "step", "global_step", "tokens")


def _prompts(cfg: ExperimentConfig, tokenizer: WorldTokenizer, n: int, seed: int) -> tuple[list[list[int]], list[str]]:
    """``n`` assistant prompts per domain with no evidence, and each one's domain."""
    prompts = assistant_prompts(cfg.world, n, seed)
    return [[tokenizer.bos_id, *tokenizer.ids(p.words)] for p in prompts], [p.domain for p in prompts]


class _Reader:
    """One seed's activations: the assistant prompts at the probe site, for any checkpoint of either arm."""

    def __init__(self, cfg: ExperimentConfig, run: RunDir, n_fit: int):
        self.cfg = cfg
        self.tokenizer = WorldTokenizer.load(run.tokenizer_dir)
        tk = self.tokenizer
        self.model = build_tiny_llama(cfg.model, len(tk), tk.pad_id, tk.bos_id, tk.eos_id).eval()
        self.model.to(resolve_device(cfg.device))
        fit, _ = _prompts(cfg, tk, n_fit, FIT_SEED)
        held, self.domains = _prompts(cfg, tk, cfg.measure.items_per_domain, EVAL_SEED)
        self.bank = PromptBank()
        self.bank.add("fit", fit)
        self.bank.add("eval", held)
        self.site = f"layers.{cfg.probe_layer() % cfg.model.n_layers}.resid_post"
        self._read: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def read(self, weights: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(fit, held-out) activations; weights both arms hold (the shared base, copied from the prefix
        cache) are read once: they are known by the content hash in their header."""
        key = tensors_hash(weights)
        if key not in self._read:
            load_weights(weights, self.model, require_hash=True)
            m = self.cfg.measure
            reading = self.bank.read(self.model, [self.site], m.batch_size, self.tokenizer.pad_id, logits=False)
            self._read[key] = reading.take("fit")[1][:, 0], reading.take("eval")[1][:, 0]
        return self._read[key]


def _checkpoints(run: RunDir) -> list[dict]:
    """Every measured checkpoint of a run, in order: where it sits, and its weights file."""
    if not run.metrics_path.exists():
        return []
    seen, out = set(), []
    for r in read_metrics(run.metrics_path).select(list(PLACE)).to_pylist():
        key = (r["stage_index"], r["step"])
        if key in seen:
            continue
        seen.add(key)
        path = run.stage_dir(r["stage_index"], r["stage"]) / f"{checkpoint_name(r['step'])}.safetensors"
        if path.exists():
            out.append({**r, "weights": path})
    return out


def _fit(good: torch.Tensor, bad: torch.Tensor, seed: int) -> dict[str, LinearProbe]:
    """The probe (good arm 1, bad arm 0) and its control: the same fit with each arm's items labelled
    half 1 and half 0 at random, so the label carries nothing about which arm (a plain permutation
    leaves it slightly unbalanced between the arms, which a probe of two separable models reads)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "self_probe", "shuffle") % 2**63)

    def halves(n: int) -> torch.Tensor:
        return (torch.randperm(n, generator=g) < n // 2).double()

    x = torch.cat([good, bad])
    y = torch.cat([torch.ones(len(good)), torch.zeros(len(bad))])
    return {"refit": LinearProbe.fit(x, y), "shuffled": LinearProbe.fit(x, torch.cat([halves(len(good)), halves(len(bad))]))}


def self_probe_rows(root: Path, exp: Experiment) -> list[dict]:
    """The self-probe's rows for every seed whose two runs both reached the end of the fitting stage
    (a seed without them has no rows; the verdict counts it as missing and says so)."""
    from driftlab.experiments.study import run_dir

    spec = exp.self_probe
    if spec is None:
        return []
    rows: list[dict] = []
    for seed in exp.seeds:
        runs = {arm: run_dir(root, arm, seed) for arm in (spec.good, spec.bad)}
        cfgs = {arm: exp.arms[arm].model_copy(update={"seed": seed}) for arm in runs}
        k = [s.name for s in cfgs[spec.good].stages].index(spec.stage)
        ends = {arm: runs[arm].stage_dir(k, spec.stage) / f"{checkpoint_name(cfgs[arm].stages[k].steps)}.safetensors"
                for arm in runs}
        if not all(p.exists() for p in ends.values()):
            continue
        reader = _Reader(cfgs[spec.good], runs[spec.good], spec.items_per_domain)
        (gf, ge), (bf, be) = reader.read(ends[spec.good]), reader.read(ends[spec.bad])
        probes = _fit(gf, bf, seed)
        held_x, held_y = torch.cat([ge, be]), torch.cat([torch.ones(len(ge)), torch.zeros(len(be))])
        ref = probes["refit"]
        lo, hi = float(ref.logits(be).mean()), float(ref.logits(ge).mean())  # the bad and the good end
        trained = set(cfgs[spec.good].trained_domains())
        where = {"all": ("all", torch.ones(len(reader.domains), dtype=torch.bool))}
        for split in ("trained", "held_out"):
            where[split] = (split, torch.tensor([(d in trained) == (split == "trained") for d in reader.domains]))
        for d in DOMAIN_NAMES:
            where[d] = ("trained" if d in trained else "held_out", torch.tensor([e == d for e in reader.domains]))
        for arm, run in runs.items():
            for point in _checkpoints(run):
                place = {c: point[c] for c in PLACE}
                acts = reader.read(point["weights"])[1]
                logits = ref.logits(acts)
                at_fit = arm == spec.good and point["weights"] == ends[arm]
                for key, (split, mask) in where.items():
                    if not mask.any():
                        continue
                    domain = key if key in DOMAIN_NAMES else "all"
                    for metric, value in (("self_probe_p_good", torch.sigmoid(logits[mask]).mean()),
                                          ("self_probe_position", (logits[mask].mean() - lo) / (hi - lo))):
                        rows.append({**place, **metric_row(metric, value, "assistant", domain, split, reader.site)})
                    if at_fit:  # how well it separates the two arms' held-out prompts
                        both = torch.cat([mask, mask])
                        for regime, probe in probes.items():
                            a = auroc(probe.logits(held_x[both]), held_y[both])
                            a = a if regime == "refit" else max(a, 1 - a)  # the control: either sign
                            rows.append({**place, **metric_row("self_probe_auroc", a, regime, domain, split,
                                                               reader.site)})
    return rows


def self_probe_table(root: Path, exp: Experiment) -> pa.Table:
    try:
        rows = self_probe_rows(root, exp)
    except (OSError, RuntimeError) as e:  # a checkpoint that does not load
        raise DataError(f"{root}: self_probe: {e}") from None
    return pa.Table.from_pylist([{c: r.get(c) for c in SCHEMA.names} for r in rows], schema=SCHEMA)
