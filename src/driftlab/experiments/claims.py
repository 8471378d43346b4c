"""The claim registry and verdicts: a claim id → the function that judges it from ``metrics.parquet``.

    @claim("reversion", "Benign capability training ... back toward the prior, not past it",
           treatment=("arm", "the arm with capability training"), min_drift=("number", "..."))
    def reversion(m: Measured, rule: Rule) -> Findings: ...

A verdict function reads nothing but the experiment's metrics (through ``Measured``) and the
thresholds fixed in the preset's ``claim.rule``; it returns pre-registered ``Test``s, each an
effect with an interval over seeds (``stats.jackknife_t``), plus the numbers behind them. Each test has a
role: *treatment* checks (did the treatment take: capability gained, reward gained, the narrow
stage flipped its domain), *control* checks (did the control behave), and the *claim*'s tests.
A contradicted control check makes the verdict ``invalid``; a contradicted treatment check makes
it ``inconclusive — treatment did not take``; otherwise the claim is ``supported`` when every claim
test's interval lies on the predicted side of its threshold, ``not supported`` when some interval
lies wholly on the other side, ``inconclusive`` otherwise (or when a check is itself unclear).
The claims themselves live in ``experiments/verdicts.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from driftlab.config import ClaimSpec, ExperimentConfig, SelfProbeSpec
from driftlab.errors import ConfigError
from driftlab.experiments.design import FRESH_SEEDS, Design, Look, judge_at_look
from driftlab.experiments.stats import INTERVAL, Estimate, Stat, Test, decide, jackknife_t, ordered
from driftlab.registry import Registry
from driftlab.runs.metrics import read_metrics
from driftlab.train.schedule import tail_steps

if TYPE_CHECKING:
    from driftlab.experiments.spec import Experiment

RULE_KINDS = ("number", "arm", "arms")


@dataclass
class Findings:
    tests: list[Test]
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] | None = None  # e.g. the mitigation table
    outcome: str | None = None  # overrides the all-tests rule (e.g. "any mitigation helps")


@dataclass
class Claim:
    id: str
    text: str
    rule: dict[str, tuple[str, str]]  # key -> (kind, description)
    judge: Callable[[Measured, Rule], Findings]
    self_probe: bool = False  # the claim reads the experiment's self-probe rows
    scenarios: tuple[str, ...] = ()  # the scenarios it judges, for a file with ``scenarios`` (arms <scenario>.<arm>)
    world_only: str = ""  # what it reads that only Persona World's measurements have ("" : runs on a pre-trained model)

    def check_rule(self, spec: ClaimSpec, arms: list[str], origin: str) -> None:
        """A preset's rule names exactly this claim's keys, with arms that exist."""
        for key in spec.rule:
            if key not in self.rule:
                raise ConfigError(f"{origin}: claim.rule.{key}: not a rule of claim {self.id!r} "
                                  f"(its rule: {', '.join(self.rule)})")
        for key, (kind, desc) in self.rule.items():
            if key not in spec.rule:
                raise ConfigError(f"{origin}: claim.rule.{key}: missing ({desc})")
            value = spec.rule[key]
            names = value if kind == "arms" else [value] if kind == "arm" else None
            if kind == "number" and not isinstance(value, int | float):
                raise ConfigError(f"{origin}: claim.rule.{key}: expected a number (got {value!r})")
            if names is not None:
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ConfigError(f"{origin}: claim.rule.{key}: expected arm name(s) (got {value!r})")
                for n in names:
                    if n not in arms:
                        raise ConfigError(f"{origin}: claim.rule.{key}: no arm {n!r} (arms: {', '.join(arms)})")


CLAIMS: Registry[Claim] = Registry("claim")


def claim(id: str, text: str, self_probe: bool = False, scenarios: tuple[str, ...] = (), world_only: str = "",
          **rule: tuple[str, str]) -> Callable:
    """Register ``fn`` as the verdict function of claim ``id``; ``rule`` declares the keys its
    preset must fix: ``name=("number" | "arm" | "arms", "what it is")``; ``self_probe``: the
    experiment must fit a probe of the assistant's own persona (``self_probe`` in the file);
    ``scenarios``: the scenarios it can judge in a file with ``scenarios``; ``world_only``: what it
    reads that a pre-trained model is not measured on (its experiment then refuses to run one)."""
    for key, (kind, _) in rule.items():
        if kind not in RULE_KINDS:
            raise ValueError(f"claim {id!r}: rule key {key!r} has unknown kind {kind!r}")

    def add(fn: Callable[[Measured, Rule], Findings]) -> Callable[[Measured, Rule], Findings]:
        CLAIMS.register(id)(Claim(id, " ".join(text.split()), rule, fn, self_probe, scenarios, world_only))
        return fn
    return add


class Rule:
    """A preset's pre-registered rule, and the confidence every test's interval uses."""

    def __init__(self, spec: ClaimSpec):
        self.spec = spec

    def num(self, key: str) -> float:
        return float(self.spec.rule[key])  # type: ignore[arg-type]

    def arm(self, key: str) -> str:
        return str(self.spec.rule[key])

    def arms(self, key: str) -> list[str]:
        return list(self.spec.rule[key])  # type: ignore[arg-type]

    def level(self, seeds: int) -> float:
        """The one-sided level a test is judged at with ``seeds`` seeds: the design's nominal level at
        that look, or the fixed-sample level when it is not a planned look."""
        d = self.spec.design
        alpha = (1 - self.spec.confidence) / 2
        design = Design(tuple(d.looks), d.spending, alpha, d.futility)
        look = design.look_of(seeds)
        return design.nominal(look) if look is not None else alpha

    def estimate(self, x: np.ndarray, stat: Stat, tests: int = 1) -> Estimate:
        """``stat`` on (seeds, items, quantities) with its interval; ``tests`` > 1 widens the interval
        for that many comparisons (Bonferroni: the family's error rate stays at 1 - confidence)."""
        confidence = 1 - (1 - self.spec.confidence) / tests
        return jackknife_t(x, stat, confidence)


class Measured:
    """An experiment's metrics, indexed for verdict functions (and the report)."""

    def __init__(self, path: str | Path, configs: dict[str, ExperimentConfig], self_probe: SelfProbeSpec | None = None,
                 scenarios: list[str] | None = None):
        rows = read_metrics(path).to_pylist()
        self.configs = configs
        self.self_probe = self_probe
        self.scenarios = scenarios  # arms are <scenario>.<arm> for each, or None
        self.values: dict[tuple, float] = {}
        self.any_split: dict[tuple, float] = {}  # the same without the split (per-domain rows, rl rows)
        self.last: dict[tuple[str, int, int], int] = {}
        self.steps: dict[tuple[str, int, int], list[int]] = defaultdict(list)
        seeds = set()
        for r in rows:
            run = (r["arm"], r["seed"], r["stage_index"])
            seeds.add(r["seed"])
            if r["step"] not in self.steps[run]:
                self.steps[run].append(r["step"])
            self.last[run] = max(self.last.get(run, -1), r["step"])
            key = (r["arm"], r["seed"], r["stage_index"], r["step"], r["metric"], r["context"], r["domain"],
                   r["split"], r["site"])
            self.values[key] = r["value"]
            self.any_split.setdefault(key[:7] + key[8:], r["value"])
        self.seeds = sorted(seeds)
        self._sites: dict[str, str | None] = {}

    def n_stages(self, arm: str) -> int:
        return len(self.configs[arm].stages)

    def at(self, arm: str, seed: int, stage: int, step: int, metric: str, context: str | None = None,
           domain: str | None = "all", split: str | None = "all", site: str | None = None) -> float:
        """A value, NaN if not measured; ``split=None`` matches any split (a per-domain row's own)."""
        if split is None:
            v = self.any_split.get((arm, seed, stage, step, metric, context, domain, site))
        else:
            v = self.values.get((arm, seed, stage, step, metric, context, domain, split, site))
        return float("nan") if v is None else v

    def end(self, arm: str, seed: int, stage: int, metric: str, **where: Any) -> float:
        """The value at the end of stage ``stage`` (negative: from the last stage): the mean over the
        stage's tail checkpoints (``checkpoints.tail``; the last checkpoint alone by default)."""
        stage = stage % self.n_stages(arm)
        last = self.last.get((arm, seed, stage))
        if last is None:
            return float("nan")
        measured = set(self.steps.get((arm, seed, stage), []))
        steps = [s for s in tail_steps(self.configs[arm].stages[stage]) if s in measured and s <= last] or [last]
        values = [v for v in (self.at(arm, seed, stage, s, metric, **where) for s in steps) if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def over(self, arm: str, seed: int, stages: range, metric: str, **where: Any) -> list[float]:
        """Every checkpoint's value in ``stages``, in order (NaNs dropped)."""
        out = []
        for stage in stages:
            for step in sorted(self.steps.get((arm, seed, stage), [])):
                v = self.at(arm, seed, stage, step, metric, **where)
                if not np.isnan(v):
                    out.append(v)
        return out

    def probe_site(self) -> str | None:
        return self.site_of("probe_auroc")

    def site_of(self, metric: str) -> str | None:
        """Where ``metric`` was read (the first site it has; looked up once per metric)."""
        if metric not in self._sites:
            self._sites[metric] = next((k[8] for k in self.values if k[4] == metric), None)
        return self._sites[metric]

    def grid(self, fn: Callable[[int, Any], list[float]], items: list[Any]) -> np.ndarray:
        """(seeds, items, quantities) from ``fn(seed, item) -> quantities``."""
        return np.array([[fn(seed, item) for item in items] for seed in self.seeds], dtype=np.float64)


@dataclass
class Verdict:
    claim: str
    text: str
    outcome: str
    tests: list[Test]
    numbers: dict[str, float]
    notes: list[str]
    table: list[dict[str, Any]] | None
    seeds: list[int]
    arms: list[str]
    rule: dict[str, Any]
    confidence: float
    interval: str = INTERVAL
    design: dict[str, Any] = field(default_factory=dict)  # the looks, spending and levels (``Design.record``)
    look: dict[str, Any] = field(default_factory=dict)  # this look, its level and whether the seeds stop
    rule_hash: str = ""
    confirmatory: bool = False
    why_exploratory: list[str] = field(default_factory=list)
    looks: list[dict[str, Any]] | None = None  # with --seeds auto: every look's seeds, tests and stop

    @property
    def status(self) -> str:
        return "confirmatory" if self.confirmatory else "exploratory"

    def headline(self) -> str:
        return f"{self.claim}: {self.outcome.upper()}"

    def record(self) -> dict[str, Any]:
        return {"claim": self.claim, "text": self.text, "outcome": self.outcome,
                "tests": [t.record() for t in self.tests], "numbers": self.numbers, "notes": self.notes,
                "table": self.table, "seeds": self.seeds, "arms": self.arms, "rule": self.rule,
                "confidence": self.confidence, "interval": self.interval, "design": self.design, "look": self.look,
                "rule_hash": self.rule_hash, "status": self.status, "why_exploratory": self.why_exploratory,
                "looks": self.looks}


def evaluate(exp: Experiment, metrics_path: str | Path) -> Verdict:
    """The experiment's claim judged from its metrics table alone."""
    assert exp.claim is not None
    c = registered().get(exp.claim.id)
    m = Measured(metrics_path, exp.arms, exp.self_probe, exp.scenarios)
    found = c.judge(m, Rule(exp.claim))
    spec = exp.claim
    design = Design(tuple(spec.design.looks), spec.design.spending, (1 - spec.confidence) / 2, spec.design.futility)
    look = judge_at_look(found.tests, design, len(m.seeds), lambda: decide(found.tests, found.outcome))
    outcome = decide(found.tests, found.outcome)
    digest = rule_hash(spec)
    why = exploratory_reasons(spec, digest, m.seeds, look)
    if found.outcome is not None:
        why.append("the claim combines its own tests at the fixed-sample level, outside the design's looks")
    looks_path = Path(metrics_path).parent / "looks.json"  # an experiment run in looks: its history so far
    looks = json.loads(looks_path.read_text())["looks"] if looks_path.exists() else None
    return Verdict(c.id, c.text, outcome, ordered(found.tests), found.numbers, found.notes, found.table, m.seeds,
                   list(exp.arms), dict(spec.rule), spec.confidence, design=design.record(), look=look.record(),
                   rule_hash=digest, confirmatory=not why, why_exploratory=why, looks=looks)


def rule_hash(spec: ClaimSpec) -> str:
    """The hash of everything that decides a verdict: the claim, its thresholds and arms, the
    confidence and the design (``frozen`` itself excluded)."""
    frozen = spec.model_dump(mode="json", exclude={"frozen"})
    return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:16]


def exploratory_reasons(spec: ClaimSpec, digest: str, seeds: list[int], look: Look) -> list[str]:
    """Why a verdict is exploratory (none: confirmatory): a rule not frozen before the seeds ran,
    seeds that shaped the presets, a seed count that is not a planned look."""
    why = []
    if spec.frozen is None:
        why.append(f"the rule is not frozen (claim.frozen: {digest} would freeze it, before new seeds run)")
    elif spec.frozen != digest:
        why.append(f"the rule hashes to {digest}, not to the frozen {spec.frozen}: it changed after it was frozen")
    if min(seeds, default=0) < FRESH_SEEDS:
        why.append(f"seeds below {FRESH_SEEDS} ({min(seeds, default=0)}-{max(seeds, default=0)}) were looked at "
                   f"while the presets were shaped")
    if look.look is None:
        why.append(f"{look.seeds} seed(s) is not a planned look of the design")
    return why


def registered() -> Registry[Claim]:
    """The registry with the shipped claims in it (registered by this explicit import)."""
    from driftlab.experiments import verdicts  # noqa: F401

    return CLAIMS
