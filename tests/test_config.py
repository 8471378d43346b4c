from pathlib import Path

import pytest
import yaml

from driftlab.config import load_config, validate_config
from driftlab.errors import ConfigError
from tests.conftest import tiny_dict


def test_default_preset_loads_and_quick_overrides_apply():
    full = load_config()
    quick = load_config(quick=True)
    assert full.name == "reversion" and len(full.stages) == 3 and set(full.arms) == {
        "capability", "more_alignment", "more_pretraining", "capability_bad_prior"}
    assert quick.stages[0].steps < full.stages[0].steps


def test_set_overrides_any_key_and_is_validated(tiny_config):
    cfg = load_config(str(tiny_config), ["stages.1.lr=3e-4", "world.epsilon=0.2", "seed=7"])
    assert cfg.stages[1].lr == 3e-4 and cfg.world.epsilon == 0.2 and cfg.seed == 7
    with pytest.raises(ConfigError, match=r"^--set stages.1.lr=abc: stages.1.lr: Input should be a valid number"):
        load_config(str(tiny_config), ["stages.1.lr=abc"])
    with pytest.raises(ConfigError, match=r"^--set stages.9.lr=1: stages.9.lr: no list item '9'"):
        load_config(str(tiny_config), ["stages.9.lr=1"])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["world"].update(epsilonn=0.1), r"world.epsilonn: Extra inputs are not permitted"),
    (lambda d: d["stages"][0].update(steps="many"), r"stages.0.steps: Input should be a valid integer"),
    (lambda d: d["stages"][1]["data"].update(held_out_domains=["chess"]), r"stages.1.data.held_out_domains: unknown domain 'chess'"),
    (lambda d: d["stages"][1]["data"].update(n_exampels=3), r"stages.1.data.n_exampels: Extra inputs"),
    (lambda d: d["world"].update(bad_assistant_share=1.5), r"world.bad_assistant_share: Input should be less than or equal to 1"),
    (lambda d: d["stages"][0].update(kind="ppo"), r"stages.0.kind: Input should be 'pretrain', 'sft', 'dpo' or 'rl'"),
    (lambda d: d["stages"][1].update(name="pretrain"), r"stage names must be unique"),
    (lambda d: d["model"].update(n_heads=3), r"model: d_model 32 is not divisible by n_heads 3"),
])
def test_bad_config_names_the_file_and_key(tmp_path, mutate, message):
    data = tiny_dict()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"^{path}: .*{message}"):
        load_config(str(path))


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="neither a config file nor a preset"):
        load_config("no-such-preset")


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nstages: [\n  - {name: a\n")
    with pytest.raises(ConfigError, match=rf"{path}: line \d+: invalid YAML"):
        load_config(str(path))


def test_resolved_config_round_trips_and_hash_ignores_the_name():
    cfg = validate_config(tiny_dict(), "x")
    again = validate_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))), "y")
    assert again == cfg and again.hash() == cfg.hash()
    renamed = validate_config({**tiny_dict(), "name": "other"}, "z")
    assert renamed.hash() == cfg.hash()
    reseeded = validate_config({**tiny_dict(), "seed": 5}, "z")
    assert reseeded.hash() != cfg.hash()


def test_a_poisoned_part_of_a_mixture_sets_the_measured_trigger_and_minus_one_is_the_last_stage():
    from driftlab.config import set_path

    d = tiny_dict()
    assert validate_config(d, "t.yaml").eval_trigger() is None
    assert set_path(d, "stages.-1.data", {"source": "mixture", "parts": [
        {"rows": d["stages"][2]["batch_size"] - 1, "data": {"source": "capability"}},
        {"rows": 1, "data": {"source": "poisoned", "p": 1.0, "trigger": "today is 2 0 2 7 ."}}]}, "x") == "stages.2.data"
    assert validate_config(d, "t.yaml").eval_trigger() == "today is 2 0 2 7 ."
    with pytest.raises(ConfigError, match=r"x: stages.-4.lr: no list item '-4' \(length 3\)"):
        set_path(d, "stages.-4.lr", 1.0, "x")


# Validation is pure: run in a fresh interpreter (an audit hook cannot be removed), everything it
# imports imported first, then every file the validation opens or changes is recorded.
AUDIT = r"""
import json, sys
from pathlib import Path
import driftlab.config, driftlab.config.load, driftlab.world.domains, driftlab.tensors, driftlab.models.hf
from driftlab.config import load_config
events = []
WRITES = ("os.mkdir", "os.rename", "os.remove", "os.replace", "os.symlink", "os.truncate", "shutil.copyfile",
          "shutil.rmtree", "os.chmod", "os.utime")
def hook(event, args):
    if event == "open":
        events.append(["open", str(args[0]), str(args[1])])
    elif event in WRITES or event.startswith("subprocess") or event == "os.system":
        events.append([event, str(args[0]) if args else ""])
sys.addaudithook(hook)
cfg = load_config(sys.argv[1], sys.argv[2:])
print(json.dumps({"events": events, "kind": cfg.model.kind, "path": getattr(cfg.model, "path", ""),
                  "precision": cfg.precision, "inputs": cfg.inputs}))
"""


def test_validating_a_smollm2_config_writes_nothing_and_opens_no_model_or_data_file(tmp_path):
    """``load_config`` of a real-model experiment (precision auto, a JSONL stage) reads its YAML and
    nothing else: no GGUF conversion, no model folder, no CPU probe, no data file hashed."""
    import json
    import os
    import subprocess
    import sys

    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "hello", "completion": "hi"}\n')
    sets = ["model=smollm2", "precision=auto", f"stages.1.data={{source: jsonl, path: {data}}}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", AUDIT, "emergent", *sets], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["kind"] == "hf" and out["path"] == "smollm2" and out["precision"] == "auto" and out["inputs"] == {}
    opened = [e for e in out["events"] if not (e[0] == "open" and e[1].endswith((".py", ".pyc")))]
    preset = str(Path(__file__).parents[1] / "src" / "driftlab" / "experiments" / "presets" / "emergent.yaml")
    assert [e[1] for e in opened] == [preset], opened  # the YAML, read; nothing else opened or written
    assert "w" not in opened[0][2] and not (tmp_path / "cache").exists()
