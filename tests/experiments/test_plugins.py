"""A researcher's own claim and measurement in a plugin file outside the package: run through the
command line, recorded with the verdict, and a bad plugin is a one-line error."""

import json

import pyarrow.parquet as pq
import yaml

from tests.conftest import run_cli, tiny_dict
from tests.test_cli import assert_one_line_error

PLUGIN = '''
from driftlab.experiments.claims import Findings, claim
from driftlab.experiments.stats import Test
from driftlab.measure import measurement
from driftlab.runs.metrics import metric_row


@measurement("loss_plus_one")
def loss_plus_one(c):
    """Held-out loss plus one nat: a measurement nobody shipped."""
    return [metric_row("loss_plus_one", c.obs.heldout_loss + 1.0)]


@claim("loss-above-one", "Held-out loss plus one nat exceeds one nat.", arm=("arm", "the arm it reads"),
       cut=("number", "the threshold"))
def loss_above_one(m, r):
    x = m.grid(lambda s, _: [m.end(r.arm("arm"), s, -1, "loss_plus_one", domain=None, split=None)], [None])
    return Findings([Test("above", "loss plus one at the end", r.estimate(x, lambda q: q[:, 0]), r.num("cut"), ">")])
'''


def experiment(tmp_path, plugin_text: str = PLUGIN, name: str = "mine.py"):
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / name).write_text(plugin_text)
    d = tiny_dict()
    d.update(seeds=2, plugins=[f"plugins/{name}"],
             claim={"id": "loss-above-one", "rule": {"arm": "main", "cut": 1.0}, "design": {"looks": [2]}})
    d["measure"]["extra"] = ["loss_plus_one"]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_a_claim_and_a_measurement_from_a_plugin_file_run_and_are_recorded(tmp_path):
    path = experiment(tmp_path)
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    mine = [r["value"] for r in rows if r["metric"] == "loss_plus_one"]
    assert mine and all(v > 1.0 for v in mine)
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["claim"] == "loss-above-one" and verdict["tests"][0]["value"] > 1.0
    (plugin,) = verdict["plugins"]
    assert plugin["path"] == str((tmp_path / "plugins" / "mine.py").resolve()) and len(plugin["sha256"]) == 64
    # the run records the plugin's absolute path: a resume in a new process imports it again
    again = run_cli("run", "--resume", str(out), "--no-report")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "verdict.json").read_text())["rule_hash"] == verdict["rule_hash"]
    # a changed plugin is a different rule
    (tmp_path / "plugins" / "mine.py").write_text(PLUGIN + "\n# changed\n")
    other = run_cli("run", "--resume", str(out), "--no-report")
    assert other.returncode == 0, other.stderr
    assert json.loads((out / "verdict.json").read_text())["rule_hash"] != verdict["rule_hash"]


def test_bad_plugins_are_one_line_errors(tmp_path):
    path = experiment(tmp_path, "def broken(:\n    pass\n", "broken.py")
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "a")), "broken.py:1", "does not parse")
    path = experiment(tmp_path, "raise RuntimeError('no GPU here')\n", "fails.py")
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "b")), "fails.py:1",
                          "RuntimeError: no GPU here")
    path = experiment(tmp_path, PLUGIN.replace('"loss-above-one"', '"reversion"'), "taken.py")
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "c")), "taken.py",
                          "claim 'reversion' is already registered")
    d = yaml.safe_load(path.read_text())
    d["plugins"] = ["plugins/nope.py"]
    path.write_text(yaml.safe_dump(d))
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "d")), str(path), "plugins: plugins/nope.py")
    d["plugins"] = []
    d.pop("claim")
    path.write_text(yaml.safe_dump(d))
    assert_one_line_error(run_cli("run", str(path), "--out", str(tmp_path / "e")), "measure.extra",
                          "unknown measurement 'loss_plus_one'")
