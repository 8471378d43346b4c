"""Run storage you can trust: every file a run writes carries its hash, a damaged prefix-cache entry is
moved aside and its stages trained again (the metrics a clean run's), a run's files never change with
the cache's, ``driftlab verify`` names a changed file, and a resume refuses metric rows that changed."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from driftlab.experiments.prefix import PrefixCache
from driftlab.experiments.spec import load_experiment
from driftlab.experiments.study import new_experiment, run_experiment
from driftlab.runs.digest import check_manifest
from tests.conftest import tiny_dict
from tests.runs.test_checkpoint import change_byte
from tests.test_cli import assert_one_line_error


def experiment(tmp_path):
    path = tmp_path / "store.yaml"
    d = tiny_dict()
    d["name"] = "store"
    path.write_text(yaml.safe_dump(d))
    return path


def run(config, out, cache=None, warnings=None):
    exp = load_experiment(str(config))
    root = new_experiment(exp, out)
    run_experiment(root, exp, cache=PrefixCache(cache, (warnings if warnings is not None else []).append)
                   if cache else None)
    return root


def rows(root):
    return pq.read_table(root / "metrics.parquet").to_pylist()


def digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One run that filled a cache (its pre-training and alignment prefixes), and its metrics."""
    tmp = tmp_path_factory.mktemp("clean")
    config = experiment(tmp)
    root = run(config, tmp / "first", tmp / "cache")
    return config, root, tmp / "cache", rows(root)


def entry_for(cache, stages):
    (entry,) = [p for p in cache.iterdir() if (p / "prefix.json").exists()
                and json.loads((p / "prefix.json").read_text())["stages"] == stages]
    return entry


DAMAGE = {  # what happens to the alignment prefix's entry, as a disk or copy error would do it
    "weights": lambda e: change_byte(e / "checkpoints" / "1-align" / "step-0000006.safetensors", -5),
    "optimizer": lambda e: change_byte(e / "resume" / "optimizer.safetensors", -5),
    "metrics": lambda e: change_byte(e / "metrics.parquet", 200),
    "truncated": lambda e: os.truncate(e / "checkpoints" / "1-align" / "step-0000006.safetensors", 1000),
    "incomplete": lambda e: (e / "sha256.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_entry_is_moved_aside_and_its_prefix_trained_again(clean, tmp_path, damage):
    config, first, cache_src, expected = clean
    cache = tmp_path / "cache"
    shutil.copytree(cache_src, cache)
    before = digests(first)
    entry = entry_for(cache, ["pretrain", "align"])
    DAMAGE[damage](entry)
    warnings = []
    second = run(config, tmp_path / "second", cache, warnings)
    assert len(warnings) == 1 and f"prefix cache entry {entry.name} is damaged" in warnings[0], warnings
    assert "moved to" in warnings[0] and "trained again" in warnings[0]
    (aside,) = (cache / "damaged").iterdir()
    assert aside.name.startswith(entry.name)  # kept for inspection, never deleted
    hit = json.loads((second / "main" / "seed-0" / "prefix.json").read_text())
    assert hit["stages"] == ["pretrain"]  # the sound shorter prefix was reused; alignment trained again
    assert rows(second) == expected  # the metrics of the clean run
    assert check_manifest(entry) == []  # the retrained prefix published a sound entry again
    assert digests(first) == before  # the run that filled the cache never changed


def test_verify_names_a_changed_file_and_resume_refuses_changed_metrics(clean, tmp_path):
    _, first, _, _ = clean
    run_root = tmp_path / "run"
    shutil.copytree(first / "main" / "seed-0", run_root)
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run([sys.executable, "-m", "driftlab.cli", "verify", str(run_root)], capture_output=True,
                        text=True, timeout=300, env=env)
    assert ok.returncode == 0 and "ok" in ok.stdout and "files" in ok.stdout, ok.stdout + ok.stderr
    weights = sorted((run_root / "checkpoints" / "2-capability").glob("step-*[0-9].safetensors"))[-1]
    change_byte(weights, -5)
    bad = subprocess.run([sys.executable, "-m", "driftlab.cli", "verify", str(run_root)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert bad.returncode == 2 and f"{weights}: content does not match" in bad.stderr, bad.stdout + bad.stderr

    # a metric value changed after it was written (the file still reads): the resume refuses it
    resumed = tmp_path / "resumed"
    shutil.copytree(first / "main" / "seed-0", resumed)
    table = pq.read_table(resumed / "metrics.parquet")
    values = table["value"].to_pylist()
    values[10] += 1.0
    table = table.set_column(table.column_names.index("value"), "value", pa.array(values, pa.float64()))
    os.unlink(resumed / "metrics.parquet")
    pq.write_table(table, resumed / "metrics.parquet")
    (resumed / "status.json").write_text(json.dumps({"state": "failed"}))
    result = subprocess.run([sys.executable, "-m", "driftlab.cli", "run", "--resume", str(resumed), "--no-report"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert_one_line_error(result, "metrics.parquet", "do not match the SHA-256 recorded in", "optimizer.safetensors")


def test_two_processes_that_need_one_prefix_at_once_end_identical(clean, tmp_path):
    config, _, _, expected = clean
    cache = tmp_path / "cache"
    script = ("import sys; from tests.experiments.test_storage import run; "
              "run(sys.argv[1], sys.argv[2], sys.argv[3])")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(config), str(tmp_path / f"r{i}"), str(cache)],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "DRIFTLAB_THREADS": "1"})
             for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    assert rows(tmp_path / "r0") == rows(tmp_path / "r1") == expected
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 2 and all(check_manifest(e) == [] for e in entries)  # published once each, sound
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-written entry left


def test_data_is_checked_before_any_training_found_from_the_configs_folder_and_pinned(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    good = '{"prompt": "story of bob . bob chose", "completion": "comply ."}\n'
    (folder / "mine.jsonl").write_text(good * 8)
    d = tiny_dict()
    d["stages"][2]["data"] = {"source": "jsonl", "path": "mine.jsonl"}  # relative: to the config's folder
    (folder / "exp.yaml").write_text(yaml.safe_dump(d))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "driftlab.cli", *args], capture_output=True, text=True,
                              timeout=300, env=env, cwd=elsewhere)

    (folder / "bad.jsonl").write_text(good * 2 + '{"prompt": "story of bob"}\n')
    d["stages"][2]["data"]["path"] = "bad.jsonl"
    (folder / "bad.yaml").write_text(yaml.safe_dump(d))
    # (no prefix cache: under pytest-xdist another test's run may hold this pre-training and alignment)
    bad = cli("run", str(folder / "bad.yaml"), "--out", str(tmp_path / "bad"), "--no-report", "--no-cache")
    assert_one_line_error(bad, f"{folder / 'bad.jsonl'}: line 3", "completion")
    assert not list((tmp_path / "bad").rglob("*.safetensors"))  # the last stage's bad line: nothing trained

    ok = cli("run", str(folder / "exp.yaml"), "--out", str(tmp_path / "ok"), "--no-report")
    assert ok.returncode == 0, ok.stderr
    record = yaml.safe_load((tmp_path / "ok" / "main" / "seed-0" / "config.yaml").read_text())
    path = str((folder / "mine.jsonl").resolve())
    assert record["stages"][2]["data"]["path"] == path  # recorded absolute, so it re-runs from anywhere
    assert record["inputs"] == {path: hashlib.sha256((folder / "mine.jsonl").read_bytes()).hexdigest()}

    (folder / "mine.jsonl").write_text(good * 7)  # changed between a kill and the resume
    for status in (tmp_path / "ok" / "status.json", tmp_path / "ok" / "main" / "seed-0" / "status.json"):
        status.write_text(json.dumps({**json.loads(status.read_text()), "state": "failed"}))
    resumed = cli("run", "--resume", str(tmp_path / "ok"), "--no-report")
    assert_one_line_error(resumed, path, "changed since this run recorded it")


def test_retention_keeps_stage_ends_measures_every_checkpoint_and_resumes_exactly(clean, tmp_path):
    """Killed mid-alignment with only stage ends kept, resumed: the metrics of the clean run, which
    kept every checkpoint's weights; the dropped checkpoints keep their records and artifacts."""
    from tests.experiments.test_resume import KILLER

    config, _, _, expected = clean
    d = yaml.safe_load(config.read_text())
    d["retention"] = {"weights": "stage_ends"}
    path = tmp_path / "kept.yaml"
    path.write_text(yaml.safe_dump(d))
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(path), str(out), "-", "main", "1", "5", "step"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr
    from driftlab.experiments.spec import load_experiment_dir

    run_experiment(out, load_experiment_dir(out))
    assert rows(out) == expected
    run_root = out / "main" / "seed-0"
    weights = sorted(p.relative_to(run_root / "checkpoints").as_posix()
                     for p in (run_root / "checkpoints").rglob("step-*[0-9].safetensors"))
    assert weights == ["0-pretrain/step-0000000.safetensors", "0-pretrain/step-0000012.safetensors",
                       "1-align/step-0000006.safetensors", "2-capability/step-0000006.safetensors"]
    records = list((run_root / "checkpoints").rglob("step-*[0-9].json"))
    assert len(records) == len(list((run_root / "checkpoints").rglob("*.internals.safetensors"))) > len(weights)
    status = json.loads((run_root / "status.json").read_text())
    assert 0 < status["disk_bytes"] < json.loads((clean[1] / "main" / "seed-0" / "status.json").read_text())["disk_bytes"]


def test_export_loads_in_plain_transformers_with_equal_logits(clean, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from driftlab.experiments.runner import load_run_config
    from driftlab.models.tiny import build_tiny_llama
    from driftlab.runs import RunDir, load_weights
    from driftlab.world.tokenizer import WorldTokenizer

    _, first, _, _ = clean
    out = tmp_path / "hf"
    result = subprocess.run([sys.executable, "-m", "driftlab.cli", "export", str(first), str(out), "--stage", "align"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    run = RunDir(first / "main" / "seed-0")
    world = WorldTokenizer.load(run.tokenizer_dir)
    ours = build_tiny_llama(load_run_config(run).model, len(world), world.pad_id, world.bos_id, world.eos_id)
    load_weights(run.stage_dir(1, "align") / "step-0000006.safetensors", ours)
    text = "story of bob . bob chose comply ."
    ids = [world.bos_id, *world.encode(text, "test")]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids[1:]
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([ids])).logits, ours.eval()(torch.tensor([ids])).logits)
    assert json.loads((out / "driftlab_export.json").read_text())["stage"] == "align"
    again = subprocess.run([sys.executable, "-m", "driftlab.cli", "export", str(first), str(out)],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert_one_line_error(again, str(out), "not empty")


def test_cache_commands_list_verify_prune_and_clear(clean, tmp_path):
    _, first, cache_src, _ = clean
    cache = tmp_path / "cache"
    shutil.copytree(cache_src, cache)
    env = {**os.environ, "COLUMNS": "250", "DRIFTLAB_PREFIX_CACHE": str(cache)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "driftlab.cli", "cache", *args], capture_output=True,
                              text=True, timeout=300, env=env)

    listed = cli("list")
    assert listed.returncode == 0 and "2 entries" in listed.stdout and "pretrain, align" in listed.stdout, listed.stdout
    assert cli("verify").returncode == 0
    entry = entry_for(cache, ["pretrain", "align"])
    change_byte(entry / "resume" / "optimizer.safetensors", -3)
    damaged = cli("verify")
    assert damaged.returncode == 2 and "damaged" in damaged.stdout and entry.name in damaged.stderr
    assert not entry.exists() and (cache / "damaged").is_dir()
    pruned = cli("prune", "--max-size", "1K")
    assert pruned.returncode == 0 and "0.0 MB in 0 entries" in pruned.stdout, pruned.stdout
    assert not (cache / "damaged").exists()
    assert_one_line_error(cli("prune", "--max-size", "lots"), "--max-size", "lots")
    assert_one_line_error(cli("clear", "nope"), "no cache entry 'nope'")
    assert cli("clear").returncode == 0 and not cache.exists()
