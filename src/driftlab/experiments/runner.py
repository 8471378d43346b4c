"""Run an experiment: its stages in order, a checkpoint and a measurement on each stage's schedule.

Each stage starts from the previous stage's last checkpoint. At every checkpoint the runner writes
the weights (safetensors + JSON), measures, writes the internals artifact (persona directions and
probes), rewrites ``metrics.parquet`` and saves the optimizer state, in that order, each
atomically. The measurement suite keeps two anchors — the start of the current stage and the
reference checkpoint — and, in the stages after the reference, steps the co-trained probe after
every training step. ``--resume`` restarts from the last complete checkpoint, rebuilds the anchors
from their checkpoints and the co-trained probe from the last artifact, and drops any metric rows
measured after it, so a killed run ends with the same metrics as one that was never killed.
Every checkpoint records the hash of the code that wrote it (driftlab's training and measurement
sources and torch's version); a resume with other code is refused, since it could not keep that promise.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from driftlab.codec import ChatCodec
from driftlab.config import ExperimentConfig, HFModelConfig, dump_config, load_config, resolve
from driftlab.errors import CheckpointError, ConfigError, StorageError
from driftlab.experiments.stage_data import StageData, build_stage_data
from driftlab.measure.english_suite import EnglishSuite
from driftlab.measure.suite import MeasurementSuite
from driftlab.models.hf import load_causal_lm
from driftlab.models.tiny import build_tiny_llama
from driftlab.runs.atomic import write_json
from driftlab.runs.checkpoint import (
    artifact_path,
    checkpoint_name,
    load_more,
    load_optimizer,
    load_tensors,
    load_weights,
    optimizer_metadata,
    read_meta,
    resume_record,
    save_checkpoint,
    save_optimizer,
    save_tensors,
)
from driftlab.runs.digest import check_manifest, write_manifest
from driftlab.runs.metrics import MetricsStore, metric_row
from driftlab.runs.provenance import code_hash
from driftlab.runs.rundir import RunDir, disk_usage, exclusive
from driftlab.tensors import resolve_device
from driftlab.train.data import Preferences
from driftlab.train.loop import CheckpointEvent, Progress, make_optimizer, train_stage
from driftlab.train.mitigations import StageContext, StageHooks, apply_mitigations, lora_parameters
from driftlab.train.objectives import OBJECTIVES
from driftlab.train.rl import RL_START_ANSWERS, RLPrompts
from driftlab.train.schedule import checkpoint_steps
from driftlab.world.corpus import assistant_prompts, derive_seed
from driftlab.world.domains import DOMAIN_NAMES
from driftlab.world.english import english_pack
from driftlab.world.tokenizer import WorldTokenizer


class Reporter(Protocol):
    """What the runner tells its caller (the CLI draws progress bars from it)."""

    def stage_start(self, index: int, name: str, steps: int, start: int) -> None: ...
    def step(self, step: int, loss: float) -> None: ...
    def checkpoint(self, name: str, step: int, rows: list[dict]) -> None: ...
    def stage_end(self, index: int, name: str) -> None: ...


class SilentReporter:
    def stage_start(self, index: int, name: str, steps: int, start: int) -> None: ...
    def step(self, step: int, loss: float) -> None: ...
    def checkpoint(self, name: str, step: int, rows: list[dict]) -> None: ...
    def stage_end(self, index: int, name: str) -> None: ...


@dataclass
class Position:
    """Where the run is: the stage, the step inside it, and cumulative counters."""

    stage_index: int = 0
    step: int = 0
    stage_tokens: int = 0
    run_tokens: int = 0  # tokens seen by all stages up to here
    global_step: int = 0
    checkpoint: str | None = None  # path (relative to the run) of the last checkpoint

    def next_stage(self) -> Position:
        return Position(self.stage_index + 1, 0, 0, self.run_tokens, self.global_step, self.checkpoint)


def new_run(cfg: ExperimentConfig, out: str | Path | None = None, base: str | Path = "runs") -> RunDir:
    """A new run directory for ``cfg``, resolved (``driftlab.config.resolve``) and recorded."""
    cfg = resolve(cfg, cfg.name)
    run = RunDir.create(base, cfg.name, out)
    run.write_config(dump_config(cfg))
    run.set_status("running", name=cfg.name, seed=cfg.seed, config_hash=cfg.hash())
    return run


def load_run_config(run: RunDir) -> ExperimentConfig:
    run.status()  # is it a run directory at all?
    from driftlab.experiments.plugins import load_plugins

    cfg = load_config(str(run.config_path))
    load_plugins(cfg.plugins)  # the run's own measurements, recorded with it
    return resolve(cfg, str(run.config_path))  # what it recorded: its data files must still match


def default_threads() -> int:
    """Torch threads for a run whose config sets none: ``$DRIFTLAB_THREADS``, else every core (two
    processes sharing the cores should each take 1: contention slows 2-thread torch many times over)."""
    value = os.environ.get("DRIFTLAB_THREADS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"DRIFTLAB_THREADS: expected a positive integer (got {value!r})")
        return int(value)
    return os.cpu_count() or 1


def execute(run: RunDir, cfg: ExperimentConfig, reporter: Reporter | None = None,
            on_step: Callable[[int, int, float], None] | None = None,
            on_stage_end: Callable[[int], None] | None = None, stop_after: int | None = None) -> None:
    """Run (or continue) every stage; mark the run complete only at the very end. ``on_stage_end``
    is called with a stage's index once its last checkpoint and resume state are on disk. With
    ``stop_after`` k < the number of stages, only the first k stages: the run is left ``stopped``
    at that boundary, and continues from there exactly as a run killed there would."""
    reporter = reporter or SilentReporter()
    cfg = resolve(cfg, str(run.config_path))  # a no-op for what new_run or an experiment resolved
    torch.set_num_threads(cfg.threads or default_threads())
    stop = len(cfg.stages) if stop_after is None else stop_after
    if not 0 < stop <= len(cfg.stages):
        raise ValueError(f"stop_after {stop_after}: the run has {len(cfg.stages)} stages")
    with exclusive(run.root):  # before the status: another live process's run is not ours to mark
        try:
            _execute(run, cfg, reporter, on_step, on_stage_end, stop)
        except BaseException as e:
            run.set_status("failed", name=cfg.name, seed=cfg.seed, error=f"{type(e).__name__}: {e}")
            raise
        if stop < len(cfg.stages):
            run.set_status("stopped", name=cfg.name, seed=cfg.seed, config_hash=cfg.hash(), stages_done=stop)
        else:
            run.set_status("complete", name=cfg.name, seed=cfg.seed, config_hash=cfg.hash(),
                           disk_bytes=disk_usage(run.root))


def _execute(run: RunDir, cfg: ExperimentConfig, reporter: Reporter,
             on_step: Callable[[int, int, float], None] | None,
             on_stage_end: Callable[[int], None] | None, stop: int) -> None:
    started = time.perf_counter()
    run.set_status("running", name=cfg.name, seed=cfg.seed, config_hash=cfg.hash())
    _check_objectives(run, cfg)
    device = resolve_device(cfg.device, f"{run.config_path}: device")
    t0 = time.perf_counter()
    model, tokenizer, suite = build_model(run, cfg, device)
    setup_s = time.perf_counter() - t0  # the model, its tokenizer, and the measurement items
    pos, opt_path = _resume_position(run, cfg, model)
    _check_inputs(cfg, tokenizer, pos.stage_index)
    state = _Checkpointer(run, cfg, model, suite, reporter, pos)
    if pos.checkpoint is not None:
        _restore_anchors(run, cfg, model, suite, pos)
    cotrain_after = cfg.reference_index() if cfg.measure.cotrain else len(cfg.stages)
    for index in range(pos.stage_index, stop):
        stage = cfg.stages[index]
        if state.pos.step >= stage.steps and state.pos.checkpoint is not None:  # finished before the run was killed
            state.pos = state.pos.next_stage()
            continue
        before, t0 = dict(state.timings), time.perf_counter()  # the stage's time: data, training, measuring
        if stage.steps == 0:  # nothing to train (a pre-trained model's own pre-training): measured as it is
            if state.pos.checkpoint is None:
                state.optimizer = make_optimizer(model, stage)
                state.save(CheckpointEvent(0, 0, float("nan"), 0.0))
            state.stage_timing(index, stage.name, 0, time.perf_counter() - t0, before)
            state.pos = state.pos.next_stage()
            continue
        t1 = time.perf_counter()
        data = build_stage_data(cfg, index, tokenizer)
        state.timings["data_s"] += time.perf_counter() - t1
        if state.pos.checkpoint is None:
            state.optimizer = make_optimizer(model, stage)  # saved empty with the initial model
            state.save(CheckpointEvent(0, 0, float("nan"), 0.0))  # the initial model
        elif state.pos.step == 0:  # the weights the stage starts from are the last checkpoint's
            suite.set_anchor("stage_start", model, state.pos.checkpoint)
        hooks = _prepare_stage(run, cfg, index, model, tokenizer, suite, state, data, opt_path)
        start = Progress(state.pos.step, state.pos.stage_tokens)
        reporter.stage_start(index, stage.name, stage.steps, start.step)

        def step_hook(step: int, loss: float, index: int = index) -> None:
            if index > cotrain_after:
                t0 = time.perf_counter()
                suite.cotrain_step(model, (index, step))
                state.timings["cotrain_s"] += time.perf_counter() - t0
            reporter.step(step, loss)
            if on_step is not None:
                on_step(index, step, loss)

        train_stage(model, stage, hooks.data, state.optimizer, state.save, start, cfg.precision, step_hook,
                    compile=cfg.compile, hooks=hooks)
        hooks.finish()
        state.stage_timing(index, stage.name, stage.steps - start.step, time.perf_counter() - t0, before)
        reporter.stage_end(index, stage.name)
        if on_stage_end is not None:
            on_stage_end(index)
        state.pos = state.pos.next_stage()
    # wall-clock facts stay out of metrics.parquet, which must be deterministic
    write_json(run.root / "timings.json", {**state.timings, "setup_s": setup_s,
                                           "wall_s": time.perf_counter() - started,
                                           "device": str(device), "stages": state.stages})


def _check_inputs(cfg: ExperimentConfig, tokenizer: WorldTokenizer | ChatCodec, start: int) -> None:
    """Every stage still to train that reads a user's JSONL reads it whole now — every line parsed,
    its fields present, its words (or the model's tokens) known — so a bad line in the last stage's
    file fails before the first stage trains, not hours later."""
    for index in range(start, len(cfg.stages)):
        stage = cfg.stages[index]
        keys = [k for k, _ in cfg.data_files(index + 1) if k.startswith(f"stages.{index}.")]
        if not stage.steps or not keys:
            continue
        build_stage_data(cfg, index, tokenizer)
        for m in stage.mitigations:
            if getattr(m, "kind", None) == "replay" and any(k.startswith(f"stages.{index}.mitigations") for k in keys):
                build_stage_data(cfg, index, tokenizer, m.data, "replay", m.seq_len)


def _check_objectives(run: RunDir, cfg: ExperimentConfig) -> None:
    """Every stage's objective is registered: names the config key rather than failing mid-run."""
    for i, stage in enumerate(cfg.stages):
        if stage.objective_name not in OBJECTIVES:
            raise ConfigError(f"{run.config_path}: stages.{i}.objective: unknown objective "
                              f"{stage.objective_name!r} (known: {', '.join(sorted(OBJECTIVES))})")


def _prepare_stage(run: RunDir, cfg: ExperimentConfig, index: int, model: torch.nn.Module,
                   tokenizer: WorldTokenizer | ChatCodec, suite: MeasurementSuite | EnglishSuite,
                   state: _Checkpointer, data: StageData, opt_path: Path | None) -> StageHooks:
    """A stage ready to train: its mitigations applied to the model and data, the frozen models its
    objective reads, and the optimiser (and, resuming mid-stage, LoRA adapters) as they were."""
    stage = cfg.stages[index]
    frozen = _FrozenModels(run, cfg, model, index, fresh=state.pos.step == 0)
    ctx = StageContext(model, stage, index, cfg.seed, tokenizer.pad_id,
                       lambda d, key, seq_len, index=index: build_stage_data(cfg, index, tokenizer, d, key,
                                                                             seq_len),
                       lambda text, where: tokenizer.encode(text, where), frozen.get,
                       lambda name: suite.anchors[name].directions if name in suite.anchors else None,
                       lambda n, index=index: _assistant_pool(cfg, tokenizer, index, n),
                       lambda: (suite.cotrained["persona"], suite.probe_layer) if "persona" in suite.cotrained
                       else None)
    lora = any(m.kind == "lora" for m in stage.mitigations)
    if lora and state.pos.step > 0:  # resuming mid-stage: base weights as the stage began
        load_weights(_stage_start(run, cfg, index), model, require_hash=True)
    hooks = apply_mitigations(ctx, data)
    if lora and state.pos.step > 0 and opt_path is not None:  # ... and the adapters as they were
        saved = load_more(opt_path)
        with torch.no_grad():
            for name, p in lora_parameters(model).items():
                p.copy_(saved[name])
    if isinstance(data, Preferences):  # dpo: the model as the stage began, frozen
        data.reference = frozen.get("stage_start")
    state.rl = hooks.rl_prompts
    if state.rl is not None:  # rl: answers are sampled from the model being trained
        state.rl.policy = model
        if state.pos.step == 0:  # the policy before any update, read once (recorded with the first checkpoint)
            state.rl_start = state.rl.evaluate(min(RL_START_ANSWERS, 4 * stage.batch_size * stage.rl.group_size))
    state.optimizer = make_optimizer(model, stage)
    if state.pos.step > 0 and opt_path is not None:
        load_optimizer(opt_path, state.optimizer)
    return hooks


class _Checkpointer:
    """Writes a checkpoint, measures it, and saves the resume state, in that order."""

    def __init__(self, run: RunDir, cfg: ExperimentConfig, model: torch.nn.Module,
                 suite: MeasurementSuite, reporter: Reporter, pos: Position):
        self.run, self.cfg, self.model, self.suite, self.reporter = run, cfg, model, suite, reporter
        self.pos = pos
        self.optimizer: torch.optim.Optimizer | None = None
        self.rl: RLPrompts | None = None
        self.rl_start: dict[str, float] | None = None  # the rl stage's policy before any update
        self.timings = {"measure_s": 0.0, "cotrain_s": 0.0, "save_s": 0.0, "data_s": 0.0, "checkpoints": 0}
        self.stages: list[dict] = []  # per stage trained in this process: where its time went
        self.reference = cfg.reference_index()
        self.store = MetricsStore(run.metrics_path)
        self.store.truncate_after(pos.global_step if pos.checkpoint else -1)
        if pos.checkpoint is not None:  # the rows kept are the rows that checkpoint's resume state hashed
            self.store.check(resume_record(run.resume_path, "metrics"), run.resume_path)

    def stage_timing(self, index: int, name: str, steps: int, wall: float, before: dict) -> None:
        """One stage's wall time split into measuring checkpoints, the co-trained probe, writing
        checkpoints (weights, internals, metric rows and resume state, each with its hash),
        generating the stage's data, and the rest: training (forward, backward, optimiser,
        mitigations and their set-up)."""
        part = {k: self.timings[k] - before[k] for k in ("measure_s", "cotrain_s", "save_s", "data_s")}
        self.stages.append({"stage_index": index, "stage": name, "steps": steps, "wall_s": wall, **part,
                            "train_s": wall - sum(part.values()),
                            "checkpoints": self.timings["checkpoints"] - before["checkpoints"]})

    def save(self, ev: CheckpointEvent) -> None:
        cfg, pos = self.cfg, self.pos
        stage = cfg.stages[pos.stage_index]
        here = Position(pos.stage_index, ev.step, ev.tokens,
                        pos.run_tokens - pos.stage_tokens + ev.tokens, pos.global_step - pos.step + ev.step)
        adapters = (cfg.keeps_weights() == "adapters" and ev.step < stage.steps
                    and any(m.kind == "lora" for m in stage.mitigations))
        t_save = time.perf_counter()
        path = save_checkpoint(self.run.stage_dir(here.stage_index, stage.name), ev.step, self.model, {
            "stage": stage.name, "stage_index": here.stage_index, "global_step": here.global_step,
            "tokens": here.stage_tokens, "run_tokens": here.run_tokens, "config_hash": cfg.hash(),
            "prefix_hash": cfg.prefix_hash(here.stage_index + 1), "code_hash": code_hash(),
            "parent": pos.checkpoint,
        }, base=_stage_start(self.run, cfg, here.stage_index) if adapters else None)
        here.checkpoint = str(path.relative_to(self.run.root))
        anchors = []
        if here.global_step == 0:
            anchors.append("stage_start")
        if here.stage_index == self.reference and ev.step == stage.steps:
            anchors.append("reference")
        t0 = time.perf_counter()
        rows = self.suite(self.model, here.checkpoint, tuple(anchors))
        t1 = time.perf_counter()
        self.timings["measure_s"] += t1 - t0
        save_tensors(artifact_path(path), self.suite.artifacts(), {"checkpoint": path.name})
        self.timings["checkpoints"] += 1
        if ev.step > 0:
            rows += [metric_row("train_loss", ev.train_loss), metric_row("lr", ev.lr)]
        if ev.mitigation_loss is not None:
            rows.append(metric_row("mitigation_loss", ev.mitigation_loss))
        if self.rl is not None and ev.step > 0:  # the answers sampled since the previous checkpoint
            rows += [metric_row(f"rl_{k}", v, None, self.rl.domain, stage.rl.verifier)
                     for k, v in self.rl.pop_stats().items()]
            if self.rl_start is not None:  # and, once, the policy at the stage's start (``rl_*_start``)
                rows += [metric_row(f"rl_{k}_start", v, None, self.rl.domain, stage.rl.verifier)
                         for k, v in self.rl_start.items()]
                self.rl_start = None
        self.store.add({"run": cfg.name, "arm": cfg.arm, "seed": cfg.seed, "stage": stage.name,
                        "stage_index": here.stage_index, "step": ev.step,
                        "global_step": here.global_step, "tokens": here.run_tokens}, rows)
        metrics = self.store.flush()
        save_optimizer(self.run.resume_path, self.optimizer, vars(here), lora_parameters(self.model),
                       {"metrics": metrics})
        self.pos = here
        _drop_weights(self.run.stage_dir(here.stage_index, stage.name), self.cfg, here.stage_index, path)
        self.timings["save_s"] += (t0 - t_save) + (time.perf_counter() - t1)
        self.reporter.checkpoint(stage.name, ev.step, rows)


def _drop_weights(directory: Path, cfg: ExperimentConfig, index: int, latest: Path) -> None:
    """Delete the weights of this stage's checkpoints that ``cfg.retention`` does not keep, once a
    later checkpoint's resume state is on disk (a run killed before that resumes from them). Their
    JSON, internals artifacts and (``adapters``) LoRA adapters stay. A sweep over the directory, so
    nothing a kill left is missed."""
    mode = cfg.keeps_weights()
    if mode == "all":
        return
    stage = cfg.stages[index]
    kept = {stage.steps} | ({0} if index == 0 else set())
    if mode == "every":
        kept |= set(checkpoint_steps(stage)[cfg.retention.every - 1::cfg.retention.every])
    for path in directory.glob("step-*.safetensors"):
        if path == latest or not path.stem.removeprefix("step-").isdigit():  # internals, adapters
            continue
        if int(path.stem.removeprefix("step-")) not in kept:
            path.unlink(missing_ok=True)


def build_model(run: RunDir, cfg: ExperimentConfig, device: torch.device
                ) -> tuple[torch.nn.Module, WorldTokenizer | ChatCodec, MeasurementSuite | EnglishSuite]:
    """The model a run starts from, how its text is tokenised, and its measurement suite: the tiny
    Llama initialised from the run's seed with Persona World's tokenizer (saved in the run), or a
    pre-trained model from its folder with its own tokenizer and English measurements."""
    if isinstance(cfg.model, HFModelConfig):
        model, hf_tokenizer = load_causal_lm(cfg.model.path)
        _keep_tokenizer(run, lambda d: hf_tokenizer.save_pretrained(str(d)))
        codec = ChatCodec(hf_tokenizer, cfg.model.chat)
        return model.train().to(device), codec, EnglishSuite(cfg, codec)
    fresh = None if run.tokenizer_dir.exists() else WorldTokenizer.build()
    _keep_tokenizer(run, lambda d: fresh.save(d))
    tokenizer = fresh or WorldTokenizer.load(run.tokenizer_dir)
    model = build_tiny_llama(cfg.model, len(tokenizer), tokenizer.pad_id, tokenizer.bos_id,
                             tokenizer.eos_id, seed=derive_seed(cfg.seed, "init") % 2**31).to(device)
    return model, tokenizer, MeasurementSuite(cfg, tokenizer)


def _keep_tokenizer(run: RunDir, save: Callable[[Path], None]) -> bool:
    """The run's copy of its tokenizer, written once (files and their hashes, then one rename);
    True when it was there already, checked against its hashes."""
    if run.tokenizer_dir.exists():
        problems = check_manifest(run.tokenizer_dir)
        if problems:
            raise StorageError(f"{problems[0]} (tokenizer of the run {run.root})")
        return True
    tmp = run.tokenizer_dir.with_name(f".tokenizer.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    write_manifest(tmp)
    tmp.rename(run.tokenizer_dir)
    return False


def _restore_anchors(run: RunDir, cfg: ExperimentConfig, model: torch.nn.Module, suite: MeasurementSuite,
                     pos: Position) -> None:
    """After a resume: the anchors and co-trained probes exactly as the killed run had them."""
    scratch = None

    def at(path: Path) -> torch.nn.Module:
        nonlocal scratch
        scratch = scratch or copy.deepcopy(model)
        load_weights(path, scratch, require_hash=True)
        return scratch

    ref = cfg.reference_index()
    if pos.stage_index > ref or (pos.stage_index == ref and pos.step == cfg.stages[ref].steps):
        path = _stage_end(run, cfg, ref)
        suite.set_anchor("reference", at(path), str(path.relative_to(run.root)))
    if 0 < pos.step < cfg.stages[pos.stage_index].steps:  # mid-stage: where this stage started
        path = _stage_start(run, cfg, pos.stage_index)
        suite.set_anchor("stage_start", at(path), str(path.relative_to(run.root)))
    suite.restore_cotrained(load_tensors(artifact_path(run.root / str(pos.checkpoint)), require_hash=True))


def _stage_end(run: RunDir, cfg: ExperimentConfig, index: int) -> Path:
    stage = cfg.stages[index]
    return run.stage_dir(index, stage.name) / f"{checkpoint_name(stage.steps)}.safetensors"


def _stage_start(run: RunDir, cfg: ExperimentConfig, index: int) -> Path:
    """The checkpoint a stage started from: the previous stage's end, or the initial model."""
    if index > 0:
        return _stage_end(run, cfg, index - 1)
    return run.stage_dir(0, cfg.stages[0].name) / f"{checkpoint_name(0)}.safetensors"


class _FrozenModels:
    """Frozen copies of the model at the start of the stage or at the end of an earlier stage, made
    once per stage on first use (for dpo's reference, KL to a reference, the projection penalty)."""

    def __init__(self, run: RunDir, cfg: ExperimentConfig, model: torch.nn.Module, index: int, fresh: bool):
        self.run, self.cfg, self.model, self.index, self.fresh = run, cfg, model, index, fresh
        self.cache: dict[str, torch.nn.Module] = {}

    def get(self, name: str) -> torch.nn.Module:
        if name not in self.cache:
            if name == "stage_start":  # the model itself, unless resuming mid-stage
                weights = None if self.fresh else _stage_start(self.run, self.cfg, self.index)
            else:
                weights = _stage_end(self.run, self.cfg, [s.name for s in self.cfg.stages].index(name))
            self.cache[name] = _frozen(self.model, weights)
        return self.cache[name]


def _assistant_pool(cfg: ExperimentConfig, tokenizer: WorldTokenizer | ChatCodec, index: int, n: int
                    ) -> list[list[int]]:
    """Assistant episode prompts (no evidence) over every domain, from the run's seed (not the eval
    items); for a pre-trained model, English questions in its chat template."""
    per_domain = -(-n // len(DOMAIN_NAMES))
    seed = derive_seed(cfg.seed, "assistant_pool", index)
    if isinstance(tokenizer, ChatCodec):
        return [tokenizer.prompt(r["prompt"]) for r in english_pack(per_domain, seed)][:n]
    return [[tokenizer.bos_id, *tokenizer.ids(p.words)] for p in assistant_prompts(cfg.world, per_domain, seed)[:n]]


def _frozen(model: torch.nn.Module, weights: Path | None) -> torch.nn.Module:
    """A frozen copy of ``model`` (with ``weights`` loaded, if given), for reference forwards."""
    copy_ = copy.deepcopy(model)
    if weights is not None:
        load_weights(weights, copy_, require_hash=True)
    copy_.eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def _resume_position(run: RunDir, cfg: ExperimentConfig, model: torch.nn.Module) -> tuple[Position, Path | None]:
    """The last complete checkpoint (weights loaded into ``model``), or the start of the run."""
    if not run.resume_path.exists():
        return Position(), None
    load_tensors(run.resume_path, require_hash=True)  # the whole resume state, checked against its hash
    _, extra = optimizer_metadata(run.resume_path)
    pos = Position(**extra)
    weights = run.root / str(pos.checkpoint)
    meta = read_meta(weights)
    if meta.get("config_hash") != cfg.hash() and meta.get("prefix_hash") != cfg.prefix_hash(pos.stage_index + 1):
        raise CheckpointError(f"{weights}: config_hash {meta.get('config_hash')} does not match the run's "
                              f"config {cfg.hash()} (mismatched checkpoint)")
    written_by = meta.get("code_hash")
    if written_by is not None and written_by != code_hash():  # (checkpoints before 0.7 carry none)
        raise CheckpointError(f"{weights}: written by other training code (code hash {written_by}; this "
                              f"driftlab's is {code_hash()}: its sources or torch's version changed), so a "
                              f"resume would not give the metrics of an uninterrupted run; resume with the "
                              f"version that started it, or start the run again")
    load_weights(weights, model, require_hash=True)
    return pos, run.resume_path
