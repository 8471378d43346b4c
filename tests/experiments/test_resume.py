"""Kill -9 anywhere, resume in a fresh process, get the metrics of a run that was never killed.

One tiny experiment holds every stage kind and the mitigations that keep state across steps
(adapters, frozen copies, the co-trained probe, replayed data). A subprocess runs it and SIGKILLs
itself at a chosen point — after a training step, or between two of a checkpoint's writes — in a
later arm, with and without the prefix cache; ``driftlab run --resume`` then finishes it in a
fresh process, and every metric row and the verdict must equal the uninterrupted run's.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from driftlab.experiments.prefix import PrefixCache
from driftlab.experiments.spec import load_experiment, load_experiment_dir
from driftlab.experiments.study import new_experiment, run_experiment
from tests.conftest import tiny_dict

ARMS = {  # stage 2 of each arm; the arms share pre-training and alignment
    "capability": {"stages.2.mitigations": [
        {"kind": "replay", "ratio": 0.25, "data": {"source": "alignment", "n_examples": 32}},
        {"kind": "kl_to_reference", "weight": 0.5, "reference": "align"},
        {"kind": "projection_penalty", "weight": 0.5, "batch": 4},
        {"kind": "cotrained_probe", "weight": 0.5, "batch": 4}]},
    "lora": {"stages.2.mitigations": [{"kind": "lora", "r": 4},
                                      {"kind": "preventative_steering", "alpha": 2.0}]},
    "dpo": {"stages.2": {"name": "dpo", "kind": "dpo", "data": {"source": "preferences", "n_examples": 32},
                         "steps": 6, "batch_size": 4, "lr": 1e-3, "beta": 0.2,
                         "checkpoints": {"log": 2, "linear": 2}}},
    "rl": {"stages.2": {"name": "rl", "kind": "rl", "data": {"source": "capability", "n_examples": 32},
                        "steps": 6, "batch_size": 2, "lr": 1e-3,
                        "rl": {"group_size": 2, "verifier": "hackable"},
                        "mitigations": [{"kind": "kl_to_reference", "weight": 0.2},
                                        {"kind": "inoculation_prompt", "prefix": "the system is flawed ."}],
                        "checkpoints": {"log": 2, "linear": 2}}},
}

# In the subprocess: run the experiment and SIGKILL this process at (arm, stage, step, where).
KILLER = """
import os, signal, sys
import driftlab.experiments.runner as runner
from driftlab.experiments.prefix import PrefixCache
from driftlab.experiments.spec import load_experiment
from driftlab.experiments.study import Events, new_experiment, run_experiment

config, out, cache, arm, stage, step, where = sys.argv[1:]
stage, step, current = int(stage), int(step), [None]
def die():
    os.kill(os.getpid(), signal.SIGKILL)

class Track(Events):
    def run_start(self, a, seed, index, total, run):
        current[0] = a

def at(i, s):
    return current[0] == arm and (i, s) == (stage, step)

def on_step(i, s, loss):
    if where == "step" and at(i, s):
        die()

def wrap(name, after):
    real = getattr(runner, name)
    def wrapped(*args, **kw):
        pos = None
        if name == "save_checkpoint":
            pos = (int(args[0].name.split("-")[0]), args[1])
        elif name == "save_optimizer":
            pos = (args[2]["stage_index"], args[2]["step"])
        if where == name and not after and pos and at(*pos):
            die()
        out_ = real(*args, **kw)
        if where == name + "_done" and pos and at(*pos):
            die()
        return out_
    setattr(runner, name, wrapped)

wrap("save_checkpoint", False)
wrap("save_optimizer", False)
exp = load_experiment(config)
root = new_experiment(exp, out)
run_experiment(root, exp, Track(), PrefixCache(cache) if cache != "-" else None, on_step=on_step)
sys.exit("the kill point was never reached")
"""


def experiment(tmp_path):
    data = tiny_dict()
    data["name"] = "kills"
    data["arms"] = ARMS
    path = tmp_path / "kills.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    config = experiment(tmp)
    exp = load_experiment(str(config))
    root = new_experiment(exp, tmp / "exp")
    run_experiment(root, exp)
    return config, pq.read_table(root / "metrics.parquet").to_pylist()


# (arm, stage index, step, where): a step inside each stage kind of a later arm, and the gaps
# between a checkpoint's writes (weights written, resume state not yet); with the prefix cache a
# later arm starts after alignment, so its earlier stages are killed in the first arm instead
KILLS = [
    (("lora", 0, 7, "step"), False),                      # a later arm's pre-training
    (("lora", 1, 3, "save_checkpoint_done"), False),      # its alignment: weights on disk, metrics not
    (("capability", 0, 6, "save_checkpoint_done"), True),
    (("capability", 2, 3, "step"), False),                # sft with replay, KL, projection and probe penalties
    (("lora", 2, 1, "save_optimizer"), False),            # measured, resume state not yet written
    (("lora", 2, 6, "save_optimizer"), True),             # ... at the end of the run
    (("dpo", 2, 3, "step"), False),
    (("dpo", 2, 3, "step"), True),
    (("rl", 2, 3, "save_optimizer_done"), False),         # right after a complete checkpoint
]


@pytest.mark.parametrize("kill, cache", KILLS,
                         ids=[f"{'-'.join(map(str, k))}-{'cache' if c else 'no-cache'}" for k, c in KILLS])
def test_killed_anywhere_then_resumed_gives_the_uninterrupted_metrics(uninterrupted, tmp_path, kill, cache):
    config, expected = uninterrupted
    out, cache_dir = tmp_path / "killed", tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), str(out), str(cache_dir) if cache else "-",
                           *map(str, kill)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # killed at the point asked for
    assert json.loads((out / "status.json").read_text())["state"] == "running"
    if kill == KILLS[0][0]:  # as a user would: the command line, in a fresh process
        result = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--resume", str(out), "--no-report",
                                 "--no-cache"], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr
    else:  # the same code path, without a second interpreter start
        run_experiment(out, load_experiment_dir(out), cache=PrefixCache(cache_dir) if cache else None)
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    got = pq.read_table(out / "metrics.parquet").to_pylist()
    assert len(got) == len(expected)
    diff = [(e["arm"], e["stage"], e["step"], e["metric"]) for g, e in zip(got, expected) if g != e]
    assert not diff, f"{len(diff)} rows differ, first {diff[:3]}"


def test_a_resume_with_other_training_code_is_refused(tmp_path):
    """Changed sources or another torch between the kill and the resume would mix two trainings in
    one run's metrics; the checkpoint records the code hash that wrote it, and resume checks it."""
    from driftlab.config import validate_config
    from driftlab.experiments import execute, new_run
    from driftlab.runs.checkpoint import optimizer_metadata
    from driftlab.runs.digest import json_sha256
    from driftlab.runs.provenance import code_hash
    from tests.test_cli import assert_one_line_error

    cfg = validate_config(tiny_dict(), "tiny")
    run = new_run(cfg, tmp_path / "run")
    execute(run, cfg)
    last = run.root / optimizer_metadata(run.resume_path)[1]["checkpoint"]
    meta_path = last.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["code_hash"] == code_hash()
    other = {k: v for k, v in meta.items() if k != "sha256"} | {"code_hash": "0123456789ab"}
    meta_path.unlink()  # (write-once, read-only) as the other code would have written it
    meta_path.write_text(json.dumps({**other, "sha256": json_sha256(other)}))
    run.set_status("failed")
    result = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--resume", str(run.root)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert_one_line_error(result, last.name, "written by other training code", "0123456789ab")


def test_a_second_process_on_a_live_run_is_refused(uninterrupted, tmp_path):
    """A resume while the run is still alive would interleave two processes' writes: the directory
    is locked by whoever writes into it, and the lock goes with its holder, kill -9 included."""
    from driftlab.config import validate_config
    from driftlab.errors import DataError
    from driftlab.experiments import execute, new_run
    from driftlab.runs.rundir import exclusive
    from tests.test_cli import assert_one_line_error

    cfg = validate_config(tiny_dict(), "tiny")
    run = new_run(cfg, tmp_path / "run")
    with exclusive(run.root):  # this process plays the live run
        result = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--resume", str(run.root)],
                                capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
        assert_one_line_error(result, str(run.root), "in use by another driftlab process", f"pid {os.getpid()}",
                              f"on {socket.gethostname()}")
        assert run.status()["state"] == "running"  # the live run's status is not the refused one's to set
    # the lock file a killed holder leaves behind is stale: the next process takes it over
    (run.root / ".lock").write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname(), "since": 0}))
    execute(run, cfg)  # once the holder is gone, the run continues
    assert run.status()["state"] == "complete"
    config, _ = uninterrupted
    exp = load_experiment(str(config))
    root = new_experiment(exp, tmp_path / "exp")
    with exclusive(root), pytest.raises(DataError, match="in use by another driftlab process"):
        run_experiment(root, exp)
    assert json.loads((root / "status.json").read_text())["state"] == "running"
