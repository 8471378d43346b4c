import math

import pytest
import torch

from driftlab.config import ModelConfig, WorldConfig
from driftlab.measure.behaviour import BehaviourItems, behaviour_metrics, logit_gaps
from driftlab.measure.capability import (
    AnswerScores,
    CapabilityItems,
    capability_metrics,
    score_answer,
    solved,
)
from driftlab.models import build_tiny_llama
from driftlab.world import WorldTokenizer, behaviour_prompts, capability_prompts

TOK = WorldTokenizer.build()


def model():
    return build_tiny_llama(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64), len(TOK), seed=3)


def test_log_odds_equal_a_single_unbatched_forward_per_item():
    prompts = [p for ctx in ("assistant", "bad_evidence") for p in
               behaviour_prompts(WorldConfig(), ctx, "shutdown", 3, 2, seed=1)]
    items = BehaviourItems.build(prompts, TOK)
    m = model()
    gaps = logit_gaps(m, items, batch_size=4, pad=TOK.pad_id)  # batched, right-padded, sorted
    for i, ids in enumerate(items.ids):
        with torch.no_grad():
            logits = m(input_ids=torch.tensor([ids])).logits[0, -1]
        logp = logits.log_softmax(-1)
        expected = logp[items.aligned_ids[i]] - logp[items.misaligned_ids[i]]
        assert gaps[i].item() == pytest.approx(expected.item(), abs=1e-4)


def test_metrics_aggregate_per_domain_and_split_with_the_bayes_gap():
    prompts = (behaviour_prompts(WorldConfig(), "assistant", "shutdown", 2, 3, seed=0)
               + behaviour_prompts(WorldConfig(), "assistant", "harm", 2, 3, seed=0))
    log_odds = torch.tensor([math.log(3.0), math.log(3.0), 0.0, -math.log(3.0)])  # bits: log2 3, log2 3, 0, -log2 3
    rows = behaviour_metrics(log_odds, prompts, trained_domains=["shutdown"])
    get = {(r["metric"], r["domain"], r["split"]): r["value"] for r in rows}
    assert get[("p_aligned", "shutdown", "trained")] == pytest.approx(0.75)
    assert get[("bits_aligned", "shutdown", "trained")] == pytest.approx(math.log2(3))
    assert get[("p_aligned", "all", "held_out")] == pytest.approx((0.5 + 0.25) / 2)
    assert get[("bits_aligned", "all", "all")] == pytest.approx(math.log2(3) / 4)
    bayes = 0.8 * 0.9 + 0.2 * 0.1  # WorldConfig defaults: bad_assistant_share 0.2, epsilon 0.1
    target = math.log2(bayes / (1 - bayes))
    assert get[("bayes_p_aligned", "harm", "held_out")] == pytest.approx(bayes)
    assert get[("bayes_gap_bits", "harm", "held_out")] == pytest.approx(
        (abs(0 - target) + abs(-math.log2(3) - target)) / 2)


def test_evidence_contexts_carry_their_bayes_value():
    cfg = WorldConfig(epsilon=0.1, bad_character_share=0.5)
    good = behaviour_prompts(cfg, "good_evidence", "honesty", 4, 3, seed=0)
    bad = behaviour_prompts(cfg, "bad_evidence", "honesty", 4, 3, seed=0)
    assert good[0].bayes_p == pytest.approx(1 - bad[0].bayes_p)
    assert good[0].bayes_p > 0.89
    for p in good + bad:
        assert p.words[-1] == "chose" and p.words.count("chose") == 4  # 3 evidence episodes + query
        assert p.aligned == "confess" and p.misaligned == "deceive"


def test_capability_exact_match_is_what_greedy_decoding_gets_right():
    items = CapabilityItems.build(capability_prompts([1, 2], 6, seed=0), TOK)
    m = model()
    ok = solved(m, items, batch_size=5, pad=TOK.pad_id)
    for i, ids in enumerate(items.ids):  # greedy decoding, token by token
        seq = ids[: items.answer_start[i]]
        for _ in range(len(ids) - items.answer_start[i]):
            with torch.no_grad():
                seq = seq + [int(m(input_ids=torch.tensor([seq])).logits[0, -1].argmax())]
        assert bool(ok[i]) == (seq == ids)
    scores = AnswerScores(torch.tensor([True, False, True, True]), torch.tensor([1.0, 0.5, 1.0, 1.0]),
                          torch.tensor([0.1, 2.0, 0.2, 0.4]))
    rows = capability_metrics(scores, [1, 1, 2, 2])
    by = {(r["metric"], r["split"]): r["value"] for r in rows}
    assert (by["capability_acc", "level_1"], by["capability_acc", "level_2"], by["capability_acc", "all"]) == (0.5, 1.0, 0.75)
    assert by["capability_digit_acc", "level_1"] == 0.75 and by["capability_answer_nll", "all"] == pytest.approx(0.675)


def test_continuous_capability_scores_against_a_hand_computation():
    # answer tokens 5 6 . at positions 3..5; logits rigged so digit 1 is right, digit 2 wrong, '.' right
    V = 8
    logits = torch.zeros(6, V)
    logits[2, 5], logits[3, 1], logits[4, 7] = 3.0, 3.0, 3.0
    ok, digit_acc, nll = score_answer(logits, [0, 1, 2, 5, 6, 7], 3)
    assert not ok and digit_acc == 0.5  # the full stop is not a digit
    lse = torch.logsumexp(torch.tensor([3.0] + [0.0] * 7), 0)
    expected = ((lse - 3) + lse + (lse - 3)) / 3  # -log p of 5, 6 (logit 0), . at their positions
    assert nll == pytest.approx(float(expected), rel=1e-6)
