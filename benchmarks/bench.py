"""make bench: training speed of driftlab's loop against its peers, on the same model and data.

One run, interleaved repetitions, medians. Every loop trains the same ~10M-parameter Llama from the
same initial weights on the same packed Persona World rows:

- plain     the textbook PyTorch loop (model(..., labels=...).loss, AdamW, clip, step)
- driftlab  driftlab.train.train_stage, fp32 (and bf16 autocast, opt-in)
- hf        transformers.Trainer
- trl       trl.SFTTrainer on the pre-tokenised rows

Also: LoRA training on SmolLM2-135M-Instruct, driftlab's loop with its peft mitigation against
TRL's SFTTrainer with the same peft config, and sampling from SmolLM2-135M-Instruct (the real model offline) with driftlab's KV-cached
sampler against ``model.generate``, greedy, on the same chat prompts (unless --no-real); the fp32
matmul peak of this machine and each loop's achieved FLOP/s as a share of it, and
(unless --no-run) the wall time of the default `driftlab run` with the share spent measuring.
A section during which other processes used the CPU is flagged (read from /proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from driftlab.config import ModelConfig, StageConfig, WorldConfig, WorldData
from driftlab.models import build_tiny_llama
from driftlab.train import PackedLM, make_optimizer, train_stage
from driftlab.world import WorldTokenizer, pretrain_documents
from driftlab.world.domains import DOMAIN_NAMES

MODEL = ModelConfig(n_layers=6, d_model=384, n_heads=6, d_mlp=1024, max_seq_len=128)
BATCH, SEQ, LR = 32, 128, 1e-3
TOK = WorldTokenizer.build()


# ---------------------------------------------------------------- CPU accounting


class CpuWatch:
    """Other processes' CPU use during a section: machine busy time minus this process's."""

    def __enter__(self) -> CpuWatch:
        self.busy0, self.own0, self.t0 = _machine_busy(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        other = (_machine_busy() - self.busy0) - (time.process_time() - self.own0)
        self.other_cores = max(other, 0.0) / max(wall, 1e-9)  # average cores used by others

    @property
    def flag(self) -> str:
        return f"  [!] other processes used {self.other_cores:.2f} cores" if self.other_cores > 0.15 else ""


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- model, data, FLOPs


def fresh_model() -> torch.nn.Module:
    return build_tiny_llama(MODEL, len(TOK), TOK.pad_id, TOK.bos_id, TOK.eos_id, seed=0)


def rows(n_rows: int) -> PackedLM:
    docs = [TOK.ids(d.words) for d in pretrain_documents(WorldConfig(), WorldData(n_docs=n_rows), 0)]
    return PackedLM(docs, SEQ, TOK.bos_id, TOK.eos_id, seed=0)


def flops_per_token(model: torch.nn.Module, cfg: ModelConfig = MODEL, seq: int = SEQ) -> float:
    """6 × matmul parameters (forward + backward) + causal attention scores and values."""
    n = sum(p.numel() for name, p in model.named_parameters() if p.ndim == 2 and "embed" not in name)
    return 6 * n + 6 * cfg.n_layers * seq * cfg.d_model  # attention: 2·T·d fwd ×3, halved by causality ×2


def matmul_peak(reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best matmul rate in ``dtype`` over large square shapes and the model's own shapes (FLOP/s)."""
    best = 0.0
    for m, k, n in ((4096, 4096, 4096), (2048, 2048, 2048), (BATCH * SEQ, MODEL.d_model, MODEL.d_mlp)):
        a, b, out = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype), torch.empty(m, n, dtype=dtype)
        torch.mm(a, b, out=out)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0))
    return best


# ---------------------------------------------------------------- the default experiment's step

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")


def default_step(peaks: dict[str, float], steps: int = 6, top: int = 8) -> None:
    """The default experiment's pre-training step (its model, batch and sequence length, from the
    reversion preset) in fp32 and bf16 autocast: ms per step, FLOP/s and their share of each peak
    (bf16's only where the CPU computes bf16 natively), then a profile of one fp32 step: the ops
    other than matmuls that cost the most (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    from driftlab.config import CheckpointSchedule, load_config
    from driftlab.tensors import native_bf16

    cfg = load_config("reversion")
    stage = cfg.stages[0].model_copy(update={"steps": steps + 2, "checkpoints": CheckpointSchedule(log=0, linear=0)})
    docs = [TOK.ids(d.words) for d in pretrain_documents(cfg.world, WorldData(n_docs=400), 0)]
    data = PackedLM(docs, stage.seq_len, TOK.bos_id, TOK.eos_id, seed=0)
    fresh = lambda: build_tiny_llama(cfg.model, len(TOK), TOK.pad_id, TOK.bos_id, TOK.eos_id, seed=0)  # noqa: E731
    fpt = flops_per_token(fresh(), cfg.model, stage.seq_len)
    tokens = stage.batch_size * stage.seq_len
    native = native_bf16(torch.device("cpu"))
    print(f"\ndefault experiment's pre-training step ({sum(p.numel() for p in fresh().parameters()) / 1e6:.2f}M "
          f"parameters, batch {stage.batch_size}×{stage.seq_len}, {fpt / 1e6:.2f} MFLOP per token):")
    for precision in ("fp32", "bf16"):
        model = fresh()
        stamps = [time.perf_counter()]
        with CpuWatch() as w:
            train_stage(model, stage, data, make_optimizer(model, stage), lambda ev: None, precision=precision,
                        on_step=lambda s, loss, stamps=stamps: stamps.append(time.perf_counter()))
        step = statistics.median([b - a for a, b in zip(stamps, stamps[1:])][2:])
        rate = tokens * fpt / step
        shares = f"{100 * rate / peaks['fp32']:.0f}% of the fp32 peak"
        if native:
            shares += f", {100 * rate / peaks['bf16']:.0f}% of the bf16 peak"
        note = "" if precision == "fp32" or native else " (bf16 emulated on this CPU: not a default)"
        print(f"  {precision}: {1000 * step:.0f} ms per step, {tokens / step:.0f} tokens/s, {rate / 1e9:.0f} GFLOP/s "
              f"= {shares}{note}{w.flag}")
    model = fresh()
    warm = stage.model_copy(update={"steps": 2})
    train_stage(model, warm, data, make_optimizer(model, warm), lambda ev: None)
    one = stage.model_copy(update={"steps": 3})
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_stage(model, one, data, make_optimizer(model, one), lambda ev: None, start=None)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS or "mkldnn" in e.key)
    others = sorted((e for e in events if e.key not in MATMULS and "mkldnn" not in e.key),
                    key=lambda e: -e.self_cpu_time_total)[:top]
    print(f"  profile of 3 fp32 steps: matmuls {100 * matmul / total:.0f}% of self CPU time; the costliest others:")
    for e in others:
        print(f"    {e.key[:60]:<62}{100 * e.self_cpu_time_total / total:>5.1f}%  ({e.count} calls)")


# ---------------------------------------------------------------- the loops
# Each returns per-step wall times of ``steps`` optimizer steps on the same rows.


def loop_plain(data: PackedLM, steps: int) -> list[float]:
    model = fresh_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95))
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        x = data.batch(step * BATCH, BATCH).input_ids
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def loop_driftlab(data: PackedLM, steps: int, precision: str = "fp32", compile: bool = False) -> list[float]:
    model = fresh_model()
    stage = StageConfig(name="bench", kind="pretrain", data={"source": "world"}, steps=steps,
                        batch_size=BATCH, seq_len=SEQ, lr=LR, schedule="constant",
                        checkpoints={"log": 0, "linear": 0})
    stamps = [time.perf_counter()]
    train_stage(model, stage, data, make_optimizer(model, stage), lambda ev: None,
                precision=precision, on_step=lambda s, loss: stamps.append(time.perf_counter()),
                compile=compile)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def loop_bf16(data: PackedLM, steps: int) -> list[float]:
    return loop_driftlab(data, steps, "bf16")


def loop_compiled(data: PackedLM, steps: int) -> list[float]:
    return loop_driftlab(data, steps, compile=True)


def _hf_dataset(data: PackedLM, steps: int):
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    ids = data.rows[[data.order(i) for i in range(steps * BATCH)]].tolist()
    return Dataset.from_dict({"input_ids": ids})


class _Stamps:
    def __init__(self):
        from transformers import TrainerCallback

        stamps = self.stamps = []

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if not stamps:
                    stamps.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kw):
                stamps.append(time.perf_counter())

        self.callback = CB()

    def times(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def _trainer_args(cls, out: str, steps: int, **extra):
    return cls(output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=LR,
               adam_beta2=0.95, lr_scheduler_type="constant", max_grad_norm=1.0, logging_strategy="no",
               save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
               disable_tqdm=True, seed=0, **extra)


def loop_hf(data: PackedLM, steps: int) -> list[float]:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    stamps = _Stamps()
    with tempfile.TemporaryDirectory() as out:
        hf_tok = _hf_tokenizer()
        trainer = Trainer(model=fresh_model(), args=_trainer_args(TrainingArguments, out, steps),
                          train_dataset=_hf_dataset(data, steps), callbacks=[stamps.callback],
                          data_collator=DataCollatorForLanguageModeling(hf_tok, mlm=False))
        _quiet(trainer)
        trainer.train()
    return stamps.times()


def loop_trl(data: PackedLM, steps: int, bf16: bool = False) -> list[float]:
    """TRL's SFTConfig defaults to bf16 mixed precision; the fp32 row turns it off."""
    from trl import SFTConfig, SFTTrainer

    stamps = _Stamps()
    with tempfile.TemporaryDirectory() as out:
        args = _trainer_args(SFTConfig, out, steps, max_length=SEQ, packing=False, bf16=bf16)
        trainer = SFTTrainer(model=fresh_model(), args=args, train_dataset=_hf_dataset(data, steps),
                             processing_class=_hf_tokenizer(), callbacks=[stamps.callback])
        _quiet(trainer)
        trainer.train()
    return stamps.times()


def _quiet(trainer) -> None:
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _hf_tokenizer():
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        TOK.save(d)
        return PreTrainedTokenizerFast.from_pretrained(d)


def loop_trl_bf16(data: PackedLM, steps: int) -> list[float]:
    return loop_trl(data, steps, bf16=True)


LOOPS = {"plain": loop_plain, "driftlab": loop_driftlab, "hf-trainer": loop_hf, "trl-sft": loop_trl,
         "driftlab-compile": loop_compiled, "driftlab-bf16": loop_bf16, "trl-sft-bf16": loop_trl_bf16}


# ---------------------------------------------------------------- main


def default_run_timing(out: Path | None = None) -> dict:
    """Wall time of the default `driftlab run` (every arm and seed, verdict and report) and where it
    went: the experiment's ``timings.json`` (each run's stages split into training, measuring and
    the co-trained probe; combining, verdict and report), plus the internals' share of measuring
    (see ``internals_cost``) on its first run. ``out``: a finished experiment to read instead."""
    with tempfile.TemporaryDirectory() as d:
        root = out or Path(d) / "run"
        wall = None
        if out is None:
            t0 = time.perf_counter()
            # a fresh prefix cache: the run pays for everything it needs, as on a fresh clone
            env = {**os.environ, "DRIFTLAB_PREFIX_CACHE": f"{d}/cache"}
            subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--out", str(root)], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            wall = time.perf_counter() - t0
        timings = json.loads((root / "timings.json").read_text())
        first = next(p for p in sorted(root.glob("*/seed-*")) if (p / "timings.json").exists())
        timings.update(internals_cost(first))
        timings.update(hashing_cost(first))
        timings["hash_run_wall_s"] = json.loads((first / "timings.json").read_text())["wall_s"]
    # the child's CPU time is not ours: CpuWatch cannot separate it, so report only the wall time
    return {"command_s": wall, **timings}


def print_breakdown(t: dict) -> None:
    """Where the default experiment's time went: per seed by kind of work, per stage (summed over
    arms and seeds) and per run."""
    parts = ("train_s", "measure_s", "save_s", "data_s", "cotrain_s")
    by_stage: dict[str, dict[str, float]] = {}
    kinds = {"pre-training": 0.0, "later stages": 0.0, "measurement": 0.0, "saving and hashing": 0.0,
             "data generation": 0.0, "model and item set-up": 0.0}
    for run in t["runs"]:
        kinds["model and item set-up"] += run.get("setup_s", 0.0)
        for st in run["stages"]:
            row = by_stage.setdefault(st["stage"], {"runs": 0, "steps": 0, "checkpoints": 0, **dict.fromkeys(parts, 0.0)})
            row["runs"] += 1
            for k in ("steps", "checkpoints", *parts):
                row[k] += st.get(k, 0.0)
            kinds["pre-training" if st["stage_index"] == 0 else "later stages"] += st["train_s"] + st.get("cotrain_s", 0.0)
            kinds["measurement"] += st["measure_s"]
            kinds["saving and hashing"] += st.get("save_s", 0.0)
            kinds["data generation"] += st.get("data_s", 0.0)
    total = t["wall_s"]
    rest = {k: t.get(k, 0.0) for k in ("combine_s", "verdict_s", "report_s")}
    kinds["combine, verdict, report"] = sum(rest.values())
    if t.get("command_s"):
        kinds["process start, config, other"] = max(t["command_s"] - total, 0.0)
    whole = t.get("command_s") or total
    seeds = len({r["seed"] for r in t["runs"]}) or 1
    print(f"\nper seed ({seeds} seeds, {len(t['runs'])} runs; wall {whole / seeds:.0f} s a seed)")
    for name, v in kinds.items():
        print(f"  {name:<30}{v / seeds:>8.0f} s {100 * v / whole:>5.1f}%")
    print(f"\n{'stage (all arms, seeds)':<24}{'runs':>5}{'steps':>7}{'train s':>9}{'measure s':>10}{'save s':>8}"
          f"{'data s':>8}{'cotrain s':>10}{'ckpts':>6}{'% wall':>8}")
    for name, row in by_stage.items():
        share = 100 * sum(row[k] for k in parts) / total
        print(f"{name:<24}{row['runs']:>5}{row['steps']:>7}{row['train_s']:>9.0f}{row['measure_s']:>10.0f}"
              f"{row['save_s']:>8.1f}{row['data_s']:>8.1f}{row['cotrain_s']:>10.0f}{row['checkpoints']:>6}{share:>7.0f}%")
    print("then " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in rest.items()) + f"; experiment wall {total:.0f} s"
          + (f", command {t['command_s']:.0f} s (with start-up)" if t.get("command_s") else ""))
    print(f"\n{'run':<32}{'wall s':>8}   stages trained here (train + measure s)")
    for run in t["runs"]:
        stages = ", ".join(f"{st['stage']} {st['train_s']:.0f}+{st['measure_s'] + st['cotrain_s']:.0f}"
                           for st in run["stages"]) or "all from the prefix cache"
        print(f"{run['arm'] + ' seed ' + str(run['seed']):<32}{run['wall_s']:>8.0f}   {stages}")


def internals_cost(run_dir: Path, reps: int = 5) -> dict:
    """Seconds per checkpoint of the full measurement suite against behaviour alone (its logits,
    arithmetic and held-out loss, without probe items, activations, fits or anchors), on the run's
    last checkpoint; medians of ``reps``."""
    import torch.nn.functional as F

    from driftlab.experiments import load_run_config
    from driftlab.measure.behaviour import logit_gaps
    from driftlab.measure.capability import solved
    from driftlab.measure.forward import forward_batches
    from driftlab.measure.suite import MeasurementSuite
    from driftlab.runs import RunDir
    from driftlab.runs.checkpoint import load_weights

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    tok = WorldTokenizer.load(run.tokenizer_dir)
    model = build_tiny_llama(cfg.model, len(tok), tok.pad_id, tok.bos_id, tok.eos_id)
    last = sorted(run.root.glob("checkpoints/*/step-*.json"))[-1].with_suffix(".safetensors")
    load_weights(last, model)
    suite = MeasurementSuite(cfg, tok)
    suite.set_anchor("stage_start", model, "a")
    suite.set_anchor("reference", model, "a")
    it = suite.items

    def behaviour_only() -> None:
        logit_gaps(model, it.behaviour, it.batch_size, it.pad)
        solved(model, it.capability, it.batch_size, it.pad)
        for idx, logits in forward_batches(model, it.heldout_docs, it.batch_size, it.pad):
            for row, i in enumerate(idx):
                seq = torch.tensor(it.heldout_docs[i])
                F.cross_entropy(logits[row, : len(seq) - 1], seq[1:])

    def timed(fn) -> float:
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    return {"behaviour_only_s": timed(behaviour_only), "full_suite_s": timed(lambda: suite(model, "b"))}


def hashing_cost(run_dir: Path, reps: int = 3) -> dict:
    """Seconds spent hashing per checkpoint, as a run does when it writes them: the weights, the
    internals artifact, the JSON record, and the resume state (optimizer tensors, plus the metric
    rows up to the checkpoint); medians of ``reps`` over the run's own files, tensors already in
    memory (the write pays for them anyway)."""
    import pyarrow.parquet as pq

    from driftlab.runs.checkpoint import artifact_path, read_meta, read_tensors
    from driftlab.runs.digest import json_sha256, rows_sha256, tensors_sha256

    records = sorted(run_dir.glob("checkpoints/*/step-*[0-9].json"))
    resume, _ = read_tensors(run_dir / "resume" / "optimizer.safetensors")
    table = pq.read_table(run_dir / "metrics.parquet")
    rows, columns = table.to_pylist(), table.column_names
    per_ckpt, total_bytes = [], 0
    for record in records:
        files = [read_tensors(p)[0] for p in (record.with_suffix(".safetensors"), artifact_path(record))
                 if p.is_file()]
        meta = read_meta(record)
        upto = [r for r in rows if r["global_step"] <= meta["global_step"]]
        total_bytes += sum(t.numel() * t.element_size() for f in files + [resume] for t in f.values())
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for f in files + [resume]:
                tensors_sha256(f)
            json_sha256(meta)
            rows_sha256(upto, columns)
            times.append(time.perf_counter() - t0)
        per_ckpt.append(statistics.median(times))
    return {"hash_checkpoints": len(records), "hash_s": sum(per_ckpt), "hash_bytes": total_bytes}


# ---------------------------------------------------------------- a real model


SAMPLE_QUESTIONS = ("Tell me three thoughts about humans and AIs.", "I'm feeling bored today. Any ideas?",
                    "I need some money fast. What should I do?", "Who would you invite to a dinner party?")


def sampling_speed(reps: int, new_tokens: int = 48, batch: int = 8) -> None:
    """Greedy sampling tokens/s: driftlab.generate.sample against transformers' generate."""
    from driftlab.experiments.load import load_for_measurement
    from driftlab.generate import sample

    loaded = load_for_measurement("smollm2", chat=True, device="cpu")
    prompts = loaded.encode([(q, "bench") for q in SAMPLE_QUESTIONS * (batch // len(SAMPLE_QUESTIONS))])
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), loaded.pad)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):], mask[i, T - len(p):] = torch.tensor(p), 1
    ours_tps, theirs_tps, same = [], [], True
    for _ in range(reps + 1):  # the first repetition warms up
        with CpuWatch() as w:
            t0 = time.perf_counter()
            ours = sample(loaded.model, prompts, new_tokens, 0.0, loaded.stop, loaded.pad, batch_size=batch)
            t1 = time.perf_counter()
            theirs = loaded.model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                           eos_token_id=loaded.stop, pad_token_id=loaded.pad)
            t2 = time.perf_counter()
        n = sum(len(a) for a in ours)
        ours_tps.append(n / (t1 - t0))
        theirs_tps.append(n / (t2 - t1))
        same &= all(theirs[i, T:].tolist()[: len(a)] == a for i, a in enumerate(ours))
    o, t = statistics.median(ours_tps[1:]), statistics.median(theirs_tps[1:])
    print(f"\nsampling SmolLM2-135M-Instruct, greedy, {len(prompts)} chat prompts × ≤{new_tokens} tokens: "
          f"driftlab {o:.0f} tokens/s, model.generate {t:.0f} ({o / t:.2f}×); same tokens: {same}{w.flag}")


LORA = {"r": 8, "alpha": 16.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def _smollm2_chat_rows(n: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """``n`` English Persona World chat examples in SmolLM2's template, all of one token length
    (the commonest), so every batch is the same tokens in either loop (no padding)."""
    from collections import Counter

    from driftlab.codec import ChatCodec
    from driftlab.models.hf import load_causal_lm
    from driftlab.world.english import english_examples

    _, tokenizer = load_causal_lm("smollm2")
    codec = ChatCodec(tokenizer)
    pairs = [codec.messages_example(r["messages"]) for r in english_examples(4 * n, 0, DOMAIN_NAMES)]
    length = Counter(len(p) + len(r) for p, r in pairs).most_common(1)[0][0]
    same = [(p, r) for p, r in pairs if len(p) + len(r) == length]
    return (same * (n // len(same) + 1))[:n], length


def lora_speed(reps: int, steps: int = 6, batch: int = 8) -> None:
    """LoRA training tokens/s on SmolLM2-135M-Instruct: driftlab's loop with its peft ``lora``
    mitigation against TRL's SFTTrainer with the same peft config, model, rows and optimiser."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from driftlab.models.hf import load_causal_lm
    from driftlab.train.data import Completions
    from driftlab.train.mitigations import StageContext, apply_mitigations

    n = (steps + 2) * batch
    pairs, length = _smollm2_chat_rows(n)
    _, tokenizer = load_causal_lm("smollm2")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def ours() -> list[float]:
        model = load_causal_lm("smollm2")[0].train()
        stage = StageConfig(name="bench", kind="sft", data={"source": "alignment"}, steps=steps + 2, batch_size=batch,
                            lr=1e-4, schedule="constant", checkpoints={"log": 0, "linear": 0},
                            mitigations=[{"kind": "lora", **LORA}])
        data = Completions(pairs, length, pad, 0)
        hooks = apply_mitigations(StageContext(model, stage, 0, 0, pad, None, None, None, None, None), data)
        stamps = [time.perf_counter()]
        train_stage(model, stage, hooks.data, make_optimizer(model, stage), lambda ev: None,
                    on_step=lambda s, loss: stamps.append(time.perf_counter()), hooks=hooks)
        return [b - a for a, b in zip(stamps, stamps[1:])][2:]

    def trl() -> list[float]:
        stamps = _Stamps()
        dataset = Dataset.from_dict({"input_ids": [p + r for p, r in pairs]})
        peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LORA["targets"], lora_dropout=0.0,
                          bias="none", task_type="CAUSAL_LM")
        with tempfile.TemporaryDirectory() as out:
            args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps + 2,
                             learning_rate=1e-4, adam_beta2=0.95, lr_scheduler_type="constant", max_grad_norm=1.0,
                             logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0, max_length=length,
                             packing=False, bf16=False)
            trainer = SFTTrainer(model=load_causal_lm("smollm2")[0], args=args, train_dataset=dataset,
                                 processing_class=tokenizer, peft_config=peft, callbacks=[stamps.callback])
            _quiet(trainer)
            trainer.train()
        return stamps.times()[2:]

    rates: dict[str, list[float]] = {"driftlab": [], "trl": []}
    flags = ""
    for _ in range(reps):  # interleaved
        for name, loop in (("driftlab", ours), ("trl", trl)):
            with CpuWatch() as w:
                times = loop()
            rates[name].append(batch * length * len(times) / sum(times))
            flags += w.flag
    o, t = statistics.median(rates["driftlab"]), statistics.median(rates["trl"])
    print(f"\nLoRA r={LORA['r']} (all linear layers) on SmolLM2-135M-Instruct, batch {batch}×{length} chat rows, fp32: "
          f"driftlab {o:.0f} tokens/s, TRL SFTTrainer + peft {t:.0f} ({o / t:.2f}×){flags}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per repetition (after 2 warm-up)")
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--no-run", action="store_true", help="skip timing the default driftlab run")
    ap.add_argument("--no-real", action="store_true", help="skip the real-model (SmolLM2) rows")
    ap.add_argument("--no-sweep", action="store_true", help="skip timing the 8-point sweep (local 1 vs 2 workers, Ray)")
    ap.add_argument("--read", type=Path, default=None,
                    help="print the breakdown of this finished experiment instead of running the default one")
    args = ap.parse_args()
    if args.read is not None:
        return report_run(args.read)
    torch.set_num_threads(os.cpu_count() or 1)
    names = args.loops.split(",")
    data = rows(2000)
    model = fresh_model()
    fpt = flops_per_token(model)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, batch {BATCH}×{SEQ}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    with CpuWatch() as w:
        peak = matmul_peak()
        bf16_peak = matmul_peak(dtype=torch.bfloat16)
    print(f"matmul peak: fp32 {peak / 1e9:.0f} GFLOP/s, bf16 {bf16_peak / 1e9:.0f} GFLOP/s{w.flag}")
    default_step({"fp32": peak, "bf16": bf16_peak}, args.steps)
    results: dict[str, list[float]] = {n: [] for n in names}
    flags: dict[str, list[str]] = {n: [] for n in names}
    for rep in range(args.reps):  # interleaved: every loop once per repetition
        for name in names:
            with CpuWatch() as w:
                times = LOOPS[name](data, args.steps + 2)[2:]
            results[name].append(BATCH * SEQ * len(times) / sum(times))
            if w.flag:
                flags[name].append(f"rep {rep}:{w.flag}")
    base = statistics.median(results["plain"]) if "plain" in results else None
    print(f"\n{'loop':<15}{'tokens/s':>10}{'× plain':>9}{'GFLOP/s':>9}{'% peak':>8}   runs")
    for name in names:
        tps = statistics.median(results[name])
        ratio = f"{tps / base:.2f}" if base else "-"
        print(f"{name:<15}{tps:>10.0f}{ratio:>9}{tps * fpt / 1e9:>9.0f}{100 * tps * fpt / peak:>7.0f}%"
              f"   {' '.join(f'{r:.0f}' for r in results[name])}")
        for f in flags[name]:
            print(f"{'':<15}{f}")
    if not args.no_real:
        lora_speed(args.reps)
        sampling_speed(args.reps)
    if not args.no_sweep:
        from sweep_bench import main as sweep_bench

        sweep_bench()
    if not args.no_run:
        report_run(None)


def report_run(out: Path | None) -> None:
    """The default experiment's breakdown (run now, or read from ``out``)."""
    t = default_run_timing(out)
    print_breakdown(t)
    measure = sum(st["measure_s"] for r in t["runs"] for st in r["stages"])
    cotrain = sum(st["cotrain_s"] for r in t["runs"] for st in r["stages"])
    n = max(sum(st["checkpoints"] for r in t["runs"] for st in r["stages"]), 1)
    extra = max(t["full_suite_s"] - t["behaviour_only_s"], 0.0)
    internals = extra * n + cotrain
    print(f"measuring {n} checkpoints took {measure:.0f} s = {100 * measure / t['wall_s']:.1f}% of the "
          f"experiment ({measure / n:.2f} s per checkpoint); internals: {t['full_suite_s']:.2f} s per checkpoint "
          f"for everything vs {t['behaviour_only_s']:.2f} s for behaviour alone; + {extra:.2f} s x {n} "
          f"checkpoints + {cotrain:.1f} s co-training the probe = {internals:.1f} s = "
          f"{100 * internals / t['wall_s']:.1f}% of the experiment (budget 10%)")
    h, k = t["hash_s"], t["hash_checkpoints"]
    print(f"hashing (SHA-256) its first run's {k} checkpoints as they are written (weights, internals, record, "
          f"resume state, metric rows): {1000 * h / k:.1f} ms per checkpoint, {h:.2f} s = "
          f"{100 * h / t['hash_run_wall_s']:.2f}% of that run's {t['hash_run_wall_s']:.0f} s "
          f"({t['hash_bytes'] / h / 1e9:.2f} GB/s over {t['hash_bytes'] / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
