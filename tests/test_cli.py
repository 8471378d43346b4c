"""The command line: bad input gets one line on stderr, exit code 2, no traceback."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import run_cli, tiny_dict


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_world_sample_prints_documents():
    result = run_cli("world", "sample", "--n", "3", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("# ") == 3
    assert "chose" in result.stdout or "task" in result.stdout


def test_world_write_then_train_on_the_jsonl(tmp_path):
    out = tmp_path / "corpus.jsonl"
    result = run_cli("world", "write", "alignment", "--out", str(out), "--n", "50")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 50 and lines[0]["prompt"].endswith("chose")
    docs = tmp_path / "docs.jsonl"
    assert run_cli("world", "write", "pretrain", "--out", str(docs), "--n", "40").returncode == 0
    records = [json.loads(line) for line in docs.read_text().splitlines()]
    assert {"text", "kind", "persona", "choices"} <= set(records[0])
    data = tiny_dict()
    data["stages"][0]["data"] = {"source": "jsonl", "path": str(docs)}
    data["stages"][1]["data"] = {"source": "jsonl", "path": str(out)}
    result = run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "complete"


def test_unknown_config_key(tmp_path):
    data = tiny_dict()
    data["stages"][0]["lr_max"] = 1
    path = write(tmp_path, data)
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "r")), str(path), "stages.0.lr_max")
    assert not (tmp_path / "r").exists()


def test_wrong_type_from_set(tiny_config, tmp_path):
    result = run_cli("run", str(tiny_config), "--set", "stages.1.lr=fast", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "--set stages.1.lr=fast", "stages.1.lr")


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("run", str(tmp_path / "missing.yaml")), "missing.yaml")


def test_missing_jsonl_file(tmp_path):
    data = tiny_dict()
    data["stages"][1]["data"] = {"source": "jsonl", "path": str(tmp_path / "nope.jsonl")}
    result = run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "nope.jsonl", "not found", "stages.1.data.path")
    assert not (tmp_path / "r").exists()  # refused before anything was made


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: invalid JSON"),
    ('{"prompt": "story of bob"}', "line 2: missing or non-string field 'completion'"),
    ('{"prompt": "story of zebra", "completion": "comply ."}', "line 2: unknown word 'zebra'"),
])
def test_unreadable_jsonl_line(tmp_path, line, message):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "story of bob . bob chose", "completion": "comply ."}\n' + line + "\n")
    data = tiny_dict()
    data["stages"][1]["data"] = {"source": "jsonl", "path": str(path)}
    result = run_cli("run", str(write(tmp_path, data)), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, f"{path}: {message}")


def test_truncated_checkpoint_on_resume(tiny_config, tmp_path):
    out = tmp_path / "r"
    assert run_cli("run", str(tiny_config), "--out", str(out)).returncode == 0
    for status_path in (out / "status.json", out / "main" / "seed-0" / "status.json"):
        status = json.loads(status_path.read_text())
        status_path.write_text(json.dumps({**status, "state": "failed"}))
    last = sorted((out / "main" / "seed-0" / "checkpoints" / "2-capability").glob("*.safetensors"))[-1]
    last.write_bytes(last.read_bytes()[:64])
    assert_one_line_error(run_cli("run", "--resume", str(out)), last.name, "truncated or corrupt")
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_mismatched_checkpoint_on_resume(tiny_config, tmp_path):
    out = tmp_path / "r"
    assert run_cli("run", str(tiny_config), "--out", str(out)).returncode == 0
    (out / "main" / "seed-0" / "status.json").write_text(json.dumps({"state": "failed"}))
    exp = yaml.safe_load((out / "experiment.yaml").read_text())
    exp["arms"]["main"]["model"]["d_model"] = 64  # the saved weights no longer fit this config
    (out / "experiment.yaml").write_text(yaml.safe_dump(exp))
    assert_one_line_error(run_cli("run", "--resume", str(out)), "mismatched checkpoint")


def test_resume_of_a_directory_that_is_no_run(tmp_path):
    assert_one_line_error(run_cli("run", "--resume", str(tmp_path)), "status.json", "not a driftlab run")


def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tiny_config, tmp_path):
    data = tiny_dict()
    data["stages"][0]["steps"] = 40
    data["stages"][0]["checkpoints"] = {"log": 0, "linear": 20}
    config = write(tmp_path, data)
    ref = run_cli("run", str(config), "--out", str(tmp_path / "ref"), "--no-cache")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "driftlab.cli", "run", str(config), "--out", str(out), "--no-cache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 120
    ckpts = out / "main" / "seed-0" / "checkpoints" / "0-pretrain"
    while time.time() < deadline and len(list(ckpts.glob("*.json"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for status in (out / "status.json", out / "main" / "seed-0" / "status.json"):
        assert json.loads(status.read_text())["state"] == "running"  # never marked complete
    result = run_cli("run", "--resume", str(out))
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out / "metrics.parquet").to_pylist() == pq.read_table(tmp_path / "ref" / "metrics.parquet").to_pylist()


def test_unknown_objective_names_the_key(tiny_config, tmp_path):
    result = run_cli("run", str(tiny_config), "--set", "stages.0.objective=nonsense", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "stages.0.objective", "unknown objective 'nonsense'")
    assert json.loads((tmp_path / "r" / "status.json").read_text())["state"] == "failed"


def test_freeze_prints_the_hash_a_confirmatory_run_must_match(tmp_path):
    """`driftlab freeze` gives the rule's hash before any seed runs (on 0da4d82 only a finished run's
    verdict named it, and a --quick run's would now be another procedure's); a --set run is another
    rule; an experiment without a claim is a one-line error."""
    from driftlab.experiments.spec import load_experiment

    frozen = load_experiment("reversion").claim.frozen
    same = run_cli("freeze", "reversion")
    assert same.returncode == 0 and f"rule {frozen}" in same.stdout and "it matches" in same.stdout, same.stdout
    assert "start at 2000" in same.stdout
    moved = run_cli("freeze", "reversion", "--set", "stages.2.steps=1300")
    assert moved.returncode == 0 and f"frozen as {frozen}" in moved.stdout, moved.stdout
    new = moved.stdout.split("frozen: ")[-1].strip()
    assert len(new) == 16 and new != frozen
    assert_one_line_error(run_cli("freeze", str(write(tmp_path, tiny_dict()))), "no claim to freeze")
