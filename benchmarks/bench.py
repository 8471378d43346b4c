"""make bench: training speed of driftlab's loop against its peers, on the same model and data.

One run, interleaved repetitions, medians. Every loop trains the same ~10M-parameter Llama from the
same initial weights on the same packed Persona World rows:

- plain     the textbook PyTorch loop (model(..., labels=...).loss, AdamW, clip, step)
- driftlab  driftlab.train.train_stage, fp32 (and bf16 autocast, opt-in)
- hf        transformers.Trainer
- trl       trl.SFTTrainer on the pre-tokenised rows

Also: the fp32 matmul peak of this machine and each loop's achieved FLOP/s as a share of it, and
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


def flops_per_token(model: torch.nn.Module) -> float:
    """6 × matmul parameters (forward + backward) + causal attention scores and values."""
    n = sum(p.numel() for name, p in model.named_parameters() if p.ndim == 2 and "embed" not in name)
    return 6 * n + 6 * MODEL.n_layers * SEQ * MODEL.d_model  # attention: 2·T·d fwd ×3, halved by causality ×2


def matmul_peak(reps: int = 5) -> float:
    """Best fp32 matmul rate over large square shapes and the model's own shapes (FLOP/s)."""
    best = 0.0
    for m, k, n in ((4096, 4096, 4096), (2048, 2048, 2048), (BATCH * SEQ, MODEL.d_model, MODEL.d_mlp)):
        a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
        torch.mm(a, b, out=out)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0))
    return best


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


def default_run_timing() -> dict:
    """Wall time of the default `driftlab run`, the share spent measuring checkpoints, and the
    share of it that the internals add (see ``internals_cost``)."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--out", f"{d}/run"], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        timings = json.loads(Path(f"{d}/run/timings.json").read_text())
        timings.update(internals_cost(Path(f"{d}/run")))
    # the child's CPU time is not ours: CpuWatch cannot separate it, so report only the wall time
    return {"wall_s": wall, **timings}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per repetition (after 2 warm-up)")
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--no-run", action="store_true", help="skip timing the default driftlab run")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    names = args.loops.split(",")
    data = rows(2000)
    model = fresh_model()
    fpt = flops_per_token(model)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, batch {BATCH}×{SEQ}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    with CpuWatch() as w:
        peak = matmul_peak()
    print(f"fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s{w.flag}")
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
    if not args.no_run:
        t = default_run_timing()
        n = max(t["checkpoints"], 1)
        print(f"\ndefault `driftlab run`: {t['wall_s']:.0f} s wall; measuring {t['checkpoints']} checkpoints took "
              f"{t['measure_s']:.1f} s = {100 * t['measure_s'] / t['wall_s']:.1f}% of the run "
              f"({t['measure_s'] / n:.2f} s per checkpoint)")
        extra = max(t["full_suite_s"] - t["behaviour_only_s"], 0.0)
        internals = extra * n + t["cotrain_s"]
        print(f"internals: {t['full_suite_s']:.2f} s per checkpoint for everything vs {t['behaviour_only_s']:.2f} s "
              f"for behaviour alone; + {extra:.2f} s x {n} checkpoints + {t['cotrain_s']:.1f} s co-training the "
              f"probe = {internals:.1f} s = {100 * internals / t['wall_s']:.1f}% of the run (budget 10%)")


if __name__ == "__main__":
    main()
