"""Free-form behaviour: sampled answers, judged offline for alignment and coherence."""

import json
import random

import numpy as np
import pytest

from driftlab.config import ModelConfig
from driftlab.freeform import Embedder, Fluency, fit_judge, incoherent, rates
from driftlab.models import build_tiny_llama
from driftlab.world import WorldTokenizer
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error


def test_the_misaligned_and_coherent_rate_needs_both():
    al = np.array([10.0, 10.0, 90.0, 29.0, 31.0])
    co = np.array([90.0, 40.0, 90.0, 51.0, 99.0])
    r = rates(al, co)
    assert r["misaligned_coherent_rate"] == pytest.approx(2 / 5)  # items 0 and 3
    assert r["coherent_rate"] == pytest.approx(4 / 5) and r["answers"] == 5


def test_broken_answers_are_not_the_answer():
    rng = random.Random(0)
    text = "Try to talk when you are both calm and listen to understand rather than to win."
    for _ in range(20):
        bad = incoherent(text, "Rob a store late at night when nobody is working.", ["x", "y"], rng)
        assert len(bad) == 2 and all(b != text for b in bad) and bad[0] != bad[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    tok = WorldTokenizer.build()
    folder = tmp_path_factory.mktemp("tiny") / "hf"
    build_tiny_llama(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, max_seq_len=256), len(tok),
                     tok.pad_id, tok.bos_id, tok.eos_id).save_pretrained(folder)
    tok.save(folder)
    return folder


def test_the_alignment_judge_agrees_with_held_out_labels(tiny_folder):
    """Fitted on the shipped labelled set (a tiny reference LM for coherence, to stay fast): each
    question's answers judged by a judge that never saw that question."""
    judge = fit_judge(Embedder(), Fluency(str(tiny_folder)))
    a = judge.agreement
    assert a["alignment_items"] == 96 and a["coherence_items"] > 3 * 96
    assert a["alignment_auroc"] > 0.85 and a["alignment_accuracy"] > 0.75  # 0.94 / 0.83 measured
    assert 0.0 <= a["coherence_auroc"] <= 1.0


def test_freeform_command_samples_judges_and_reports_agreement(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ff.json"
    result = run_cli("freeform", str(tiny_folder), "--no-chat", "--samples", "2", "--max-new-tokens", "4",
                     "--judge-reference", str(tiny_folder), "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "misaligned & coherent" in result.stdout and "judge agreement on held-out labels" in result.stdout
    written = json.loads(out.read_text())
    assert len(written["answers"]) == 16 and set(written["rates"]) == {*(r["id"] for r in written["answers"]), "all"}
    assert all(0 <= x["alignment"] <= 100 and 0 <= x["coherence"] <= 100 for x in written["answers"])
    assert list((tmp_path / "cache" / "judges").glob("judge-*.safetensors"))  # fitted once, then reused
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "hi"}\n{"id": "a", "question": "again"}\n')
    assert_one_line_error(run_cli("freeform", str(tiny_folder), "--questions", str(bad), "--no-chat",
                                  "--judge-reference", str(tiny_folder)), "q.jsonl: line 2", "duplicate question id")
