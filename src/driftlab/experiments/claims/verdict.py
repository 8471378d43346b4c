"""A claim judged from an experiment's metrics table alone: the verdict, where it stands in its
design, and whether it is confirmatory.

A verdict function reads nothing but the experiment's metrics (through ``Measured``) and the
thresholds fixed in the preset's ``claim.rule``; it returns pre-registered ``Test``s, each an
effect with an interval over seeds (``stats.jackknife_t``), plus the numbers behind them. Each test has a
role: *treatment* checks (did the treatment take: capability gained, reward gained, the narrow
stage flipped its domain), *control* checks (did the control behave), and the *claim*'s tests.
A contradicted control check makes the verdict ``invalid``; a contradicted treatment check makes
it ``inconclusive — treatment did not take``; otherwise the claim is ``supported`` when every claim
test's interval lies on the predicted side of its threshold, ``not supported`` when some interval
lies wholly on the other side, ``inconclusive`` otherwise (or when a check is itself unclear).
Each test is judged at the level of the look its seeds are at (``design.judge_at_look``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftlab.config import RUN_ONLY_KEYS, ClaimSpec, config_hash
from driftlab.experiments.claims import checks
from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import CLAIMS, Claim, Rule, register
from driftlab.experiments.design import FRESH_SEEDS, Design, Look, judge_at_look
from driftlab.experiments.stats import DID_NOT_TAKE, INTERVAL, INVALID, Test, decide, ordered
from driftlab.registry import Registry

if TYPE_CHECKING:
    from driftlab.experiments.spec import Experiment


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
    plugins: list[dict[str, str]] = field(default_factory=list)  # the plugin files' paths and hashes
    failed_seeds: dict[str, list[str]] = field(default_factory=dict)  # seed -> treatment checks it failed

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
                "looks": self.looks, "plugins": self.plugins, "failed_seeds": self.failed_seeds}


def evaluate(exp: Experiment, metrics_path: str | Path) -> Verdict:
    """The experiment's claim judged from its metrics table alone."""
    assert exp.claim is not None
    c = registered().get(exp.claim.id)
    m = Measured(metrics_path, exp.arms, exp.self_probe, exp.scenarios)
    spec = exp.claim
    found = c.judge(m, Rule(spec))
    run = list(m.seeds)
    failed = failed_seeds(found.tests, run)
    share = len(failed) / len(run) if run else 0.0
    held = bool(failed) and (spec.failed_seeds == "hold" or share > spec.max_failed_share)
    if failed and not held:  # pre-registered: the seeds whose treatment did not take leave every test
        m.seeds = [s for s in run if s not in failed]
        found = c.judge(m, Rule(spec))
    design = Design(tuple(spec.design.looks), spec.design.spending, (1 - spec.confidence) / 2, spec.design.futility)
    def verdict() -> str:
        out = decide(found.tests, found.outcome)
        return DID_NOT_TAKE if held and out != INVALID else out

    look = judge_at_look(found.tests, design, len(run), verdict)
    outcome = verdict()
    if failed:
        what = "; ".join(f"seed {s}: {', '.join(names)}" for s, names in failed.items())
        found.notes.append(f"treatment did not take in {len(failed)} of {len(run)} seeds ({what}): "
                           + (f"the verdict is held (failed_seeds: {spec.failed_seeds}, at most "
                              f"{spec.max_failed_share:.0%} may fail)" if held else
                              "left out of every test (failed_seeds: exclude)"))
    plugins = plugin_files(exp)
    digest, legacy = experiment_hash(exp, plugins)
    if legacy:
        found.notes.append(f"the rule was frozen as {digest}: a hash of the claim and its read-out code, from "
                           f"before the frozen hash covered each arm's procedure too")
    why = exploratory_reasons(spec, digest, run, look)
    if found.outcome is not None:
        why.append("the claim combines its own tests at the fixed-sample level, outside the design's looks")
    looks_path = Path(metrics_path).parent / "looks.json"  # an experiment run in looks: its history so far
    looks = json.loads(looks_path.read_text())["looks"] if looks_path.exists() else None
    return Verdict(c.id, c.text, outcome, ordered(found.tests), found.numbers, found.notes, found.table, run,
                   list(exp.arms), dict(spec.rule), spec.confidence, design=design.record(), look=look.record(),
                   rule_hash=digest, confirmatory=not why, why_exploratory=why, looks=looks, plugins=plugins,
                   failed_seeds={str(k): v for k, v in failed.items()})


def plugin_files(exp: Experiment) -> list[dict[str, str]]:
    """The experiment's plugin files with their SHA-256 (part of the rule)."""
    first = next(iter(exp.arms.values()))
    return [{"path": p, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()} for p in first.plugins
            if Path(p).is_file()]


def experiment_hash(exp: Experiment, plugins: list[dict[str, str]] | None = None) -> tuple[str, bool]:
    """(the rule's hash, whether it is a legacy one): the hash a verdict of this experiment carries
    (``rule_hash`` over its claim, plugins, read-out code and each arm's procedure), or the
    experiment's frozen hash where that was frozen before the hash covered the procedure and still
    matches the claim and its read-out code (the runs of 2026-12-07 before the re-freeze)."""
    assert exp.claim is not None
    spec, code = exp.claim, readouts(registered().get(exp.claim.id))
    plugins = plugin_files(exp) if plugins is None else plugins
    if spec.frozen is not None and spec.frozen == rule_hash(spec, plugins, code):
        return spec.frozen, True
    return rule_hash(spec, plugins, code, procedure(exp)), False


def failed_seeds(tests: list[Test], seeds: list[int]) -> dict[int, list[str]]:
    """Seed -> the treatment checks its own value fails (on the wrong side of, or on, the threshold)."""
    out: dict[int, list[str]] = {}
    for t in tests:
        if t.role != "treatment" or t.estimate.over != "seeds":
            continue
        for i, v in zip(t.estimate.seed_index, t.estimate.per_seed):
            if v <= t.threshold if t.direction == ">" else v >= t.threshold:
                out.setdefault(seeds[i], []).append(t.name)
    return dict(sorted(out.items()))


def readouts(c: Claim) -> list[str]:
    """The sha256 of the code that reads a verdict out of the metrics: the claim's own module (its
    statistics and tests) and the shared checks. Editing either after freezing changes the rule."""
    files = {Path(sys.modules[c.judge.__module__].__file__ or ""), Path(checks.__file__ or "")}
    return sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file())


# what a run's procedure does not include: which seed, where and how fast it runs, where files lie
# (a data file counts by its content, from ``inputs``; a plugin's content is hashed on its own)
NOT_PROCEDURE = RUN_ONLY_KEYS | {"seed", "threads", "device", "compile", "plugins", "inputs"}


def procedure(exp: Experiment) -> dict[str, str]:
    """Arm -> the hash of the procedure its seeds follow: world, model, stages, measurement and
    precision, with every data file by its SHA-256 in place of its path. Part of the frozen rule, so
    a treatment re-tuned after its seeds were seen (more steps, another lr) is a changed rule, and a
    ``--quick`` or ``--set`` run is not the frozen experiment."""
    def by_content(node: Any, files: dict[str, str]) -> Any:
        if isinstance(node, dict):
            return {k: by_content(v, files) for k, v in node.items()}
        if isinstance(node, list):
            return [by_content(v, files) for v in node]
        return f"sha256:{files[node]}" if isinstance(node, str) and node in files else node

    return {arm: config_hash(by_content(cfg.model_dump(mode="json", exclude=NOT_PROCEDURE), cfg.inputs))
            for arm, cfg in exp.arms.items()}


def rule_hash(spec: ClaimSpec, plugins: list[dict[str, str]] | None = None, code: list[str] | None = None,
              steps: dict[str, str] | None = None) -> str:
    """The hash of everything that decides a verdict: the claim, its thresholds and arms, the
    confidence, the design (``frozen`` itself excluded), the content of any plugin file, the
    read-out code (``readouts``) and each arm's procedure (``procedure``: ``steps``)."""
    # fresh_from enters only where it was set: hashes frozen before the key existed stay what they were
    frozen = spec.model_dump(mode="json", exclude={"frozen"} | ({"fresh_from"} if spec.fresh_from == FRESH_SEEDS
                                                                 else set()))
    if plugins:
        frozen["plugins"] = sorted(p["sha256"] for p in plugins)
    if code:
        frozen["readouts"] = code
    if steps:
        frozen["procedure"] = steps
    return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:16]


def exploratory_reasons(spec: ClaimSpec, digest: str, seeds: list[int], look: Look) -> list[str]:
    """Why a verdict is exploratory (none: confirmatory): a rule not frozen before the seeds ran,
    seeds that shaped the presets, a seed count that is not a planned look."""
    why = []
    if spec.frozen is None:
        why.append(f"the rule is not frozen (claim.frozen: {digest} would freeze this run's rule; `driftlab freeze` "
                   f"prints it before any seed runs)")
    elif spec.frozen != digest:
        why.append(f"the rule hashes to {digest}, not to the frozen {spec.frozen}: its claim, read-out code or "
                   f"procedure (world, model, stages, measurement: a --quick or --set run is another) differs "
                   f"from the one frozen")
    if min(seeds, default=0) < spec.fresh_from:
        why.append(f"seeds below {spec.fresh_from} ({min(seeds, default=0)}-{max(seeds, default=0)}) were looked at "
                   f"while the rule was shaped or tuned (claim.fresh_from)")
    if look.look is None:
        why.append(f"{look.seeds} seed(s) is not a planned look of the design")
    return why


_BUILTIN_LOADED = False


def registered() -> Registry[Claim]:
    """The registry with the shipped claims in it, registered here by explicit import (plugins add
    theirs through ``plugins.load_plugins``)."""
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        from driftlab.experiments.claims import (
            elasticity,
            emergent,
            exchange_rate,
            frozen_probe,
            hidden_persona,
            mitigations,
            reversion,
            reward_hacking,
            trojan,
        )

        for fn in (reversion.reversion, exchange_rate.exchange_rate, frozen_probe.frozen_probe, emergent.emergent,
                   trojan.trojan, reward_hacking.reward_hacking, mitigations.mitigations,
                   hidden_persona.hidden_persona, elasticity.elasticity):
            register(fn)
        _BUILTIN_LOADED = True
    return CLAIMS
