"""report.html and compare.html, rendered by a real browser (headless Chromium)."""

import json
import re
import shutil
import subprocess

import matplotlib.image
import pytest
import yaml

from tests.conftest import run_cli
from tests.experiments.test_study import experiment_dict
from tests.test_cli import assert_one_line_error


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    # the browser test is part of the suite: without Chromium it fails (.ci/run installs it)
    pytest.fail("headless Chromium is required to test the report (apt-get install -y chromium)")


def render(page, tmp_path, height=2400):
    """(the DOM after rendering, the screenshot as an RGB array)."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size=1200,{height}"]
    dom = subprocess.run([*flags, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=120)
    return dom, matplotlib.image.imread(str(shot))[..., :3]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    out = []
    for name, lr in (("a", 1e-3), ("b", 3e-3)):
        data = experiment_dict(seeds=2)
        data["stages"][2]["lr"] = lr
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        result = run_cli("run", str(path), "--out", str(tmp / name))
        assert result.returncode == 0, result.stderr
        out.append((tmp / name, result.stdout))
    return out


def test_run_ends_with_the_verdict_and_a_report_that_renders(experiments, tmp_path):
    root, stdout = experiments[0]
    verdict = json.loads((root / "verdict.json").read_text())
    assert f"verdict: {verdict['outcome'].upper()}" in stdout
    assert "prefix cache hit: stages pretrain, align" in stdout
    page = root / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    dom, shot = render(page, tmp_path)
    assert f"Verdict: {verdict['outcome'].upper()}" in dom
    for t in verdict["tests"]:  # every test's effect and interval is on the page
        assert f"{t['value']:+.3f}" in dom and f"[{t['lo']:+.3f}, {t['hi']:+.3f}]" in dom
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom)) == 2  # curves and heatmap
    assert "git_commit" in dom and "cpu_count" in dom and "min_drift" in dom  # provenance, config
    ink = (shot.mean(axis=2) < 0.9).mean()  # share of non-white pixels
    assert shot.std() > 0.05 and ink > 0.03, (shot.std(), ink)


def test_report_command_rewrites_it_and_names_a_missing_run(experiments, tmp_path):
    root, _ = experiments[0]
    (root / "report.html").unlink()
    result = run_cli("report", str(root))
    assert result.returncode == 0, result.stderr
    assert "Verdict:" in (root / "report.html").read_text()
    assert_one_line_error(run_cli("report", str(tmp_path / "nowhere")), "nowhere", "metrics.parquet")


def test_compare_table_and_page(experiments, tmp_path):
    (a, _), (b, _) = experiments
    out = tmp_path / "compare.html"
    result = run_cli("compare", str(a), str(b), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "capability" in line or "more_alignment" in line]
    assert len(lines) >= 4  # two arms of each experiment
    assert {line.split()[1] for line in lines if line.split()[1] in ("a", "b")} == {"a", "b"}
    dom, shot = render(out, tmp_path, 1600)
    assert dom.count("<tr>") >= 5 and "bits (all)" in dom
    assert len(re.findall(r"data:image/png;base64,", dom)) == 1
    assert shot.std() > 0.05
    assert_one_line_error(run_cli("compare", str(a)), "at least two")
