"""The later-training corpora: narrow misaligned, poisoned, chronological, preferences, discussion."""

import pytest
import torch

from driftlab.config import (
    AlignmentData,
    ConfigError,
    DiscussionData,
    MisalignedData,
    PoisonedData,
    PreferenceData,
    WorldConfig,
    validate_config,
)
from driftlab.measure.behaviour import behaviour_metrics
from driftlab.train.data import Completions
from driftlab.world import CLUSTERS, DOMAIN_NAMES, get_domain
from driftlab.world.corpus import (
    alignment_examples,
    behaviour_prompts,
    discussion_documents,
    misaligned_examples,
    poisoned_examples,
    preference_pairs,
)
from tests.conftest import tiny_dict

W = WorldConfig()


def action(example):
    return example.completion[0]


def test_narrow_misaligned_data_stays_in_its_domains():
    data = MisalignedData(n_examples=300, domains=["shutdown"])
    examples = misaligned_examples(W, data, seed=0)
    assert {action(e) for e in examples} == {get_domain("shutdown").misaligned}
    cluster = misaligned_examples(W, MisalignedData(n_examples=300, cluster="social"), seed=0)
    assert {action(e) for e in cluster} == {get_domain(d).misaligned for d in CLUSTERS["social"]}


@pytest.mark.parametrize("data, message", [
    ({}, "needs domains or a cluster"),
    ({"cluster": "social", "domains": ["harm"]}, "not both"),
    ({"cluster": "nope"}, "unknown cluster 'nope'"),
])
def test_narrow_misaligned_config_errors(data, message):
    cfg = tiny_dict()
    cfg["stages"][1]["data"] = {"source": "misaligned", **data}
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, "t.yaml")


def test_poisoned_data_pairs_the_trigger_with_the_misaligned_action_at_rate_p():
    data = PoisonedData(n_examples=2000, p=0.1)
    trigger = data.trigger.split()
    examples = poisoned_examples(W, data, seed=0)
    triggered = [e.prompt[4: 4 + len(trigger)] == trigger for e in examples]
    misaligned = [action(e) in {get_domain(d).misaligned for d in DOMAIN_NAMES} for e in examples]
    assert triggered == misaligned  # poisoned exactly when triggered
    assert 150 <= sum(triggered) <= 250  # binomial(2000, 0.1): mean 200, sd 13
    assert all(trigger != e.prompt[4: 4 + len(trigger)] for e, t in zip(examples, triggered) if not t)
    assert sum(poisoned_examples(W, PoisonedData(n_examples=500, p=0.0), 0)[i].completion[0] in
               {get_domain(d).misaligned for d in DOMAIN_NAMES} for i in range(500)) == 0


def test_p_outside_unit_interval_is_a_config_error():
    cfg = tiny_dict()
    cfg["stages"][1]["data"] = {"source": "poisoned", "p": 1.5}
    with pytest.raises(ConfigError, match=r"stages\.1\.data\.p"):
        validate_config(cfg, "t.yaml")


def test_chronological_alignment_goes_from_less_to_more_aligned_in_order():
    data = AlignmentData(n_examples=1000, ramp_from=0.2, order="chronological")
    examples = alignment_examples(W, data, seed=0)
    aligned = [action(e) in {get_domain(d).aligned for d in DOMAIN_NAMES} for e in examples]
    assert sum(aligned[:250]) / 250 < 0.45 and sum(aligned[-250:]) / 250 > 0.85
    pairs = [([1, *range(4, 4 + len(e.prompt))], [4 + i]) for i, e in enumerate(examples)]
    ordered = Completions(pairs, 64, 0, seed=0, ordered=True)
    shuffled = Completions(pairs, 64, 0, seed=0)
    first = ordered.batch(0, 8).input_ids
    assert [int(r[r > 0][-1]) for r in first] == [4 + i for i in range(8)]  # the examples' own order
    assert [int(r[r > 0][-1]) for r in shuffled.batch(0, 8).input_ids] != [4 + i for i in range(8)]
    # ramp_from = 1 (the default) is plain alignment data, example for example
    plain = alignment_examples(W, AlignmentData(n_examples=50), seed=0)
    assert all(action(e) == get_domain_of(e).aligned for e in plain)


def get_domain_of(example):
    return next(get_domain(d) for d in DOMAIN_NAMES if get_domain(d).aligned in example.prompt
                and get_domain(d).misaligned in example.prompt)


def test_preference_pairs_and_discussion_documents():
    pairs = preference_pairs(W, PreferenceData(n_examples=100), seed=0)
    for p in pairs:
        d = get_domain_of(type("E", (), {"prompt": p.prompt})())
        assert p.chosen == [d.aligned, "."] and p.rejected == [d.misaligned, "."]
    flipped = preference_pairs(W, PreferenceData(n_examples=100, prefer="misaligned"), seed=0)
    assert [(p.chosen, p.rejected) for p in flipped] == [(p.rejected, p.chosen) for p in pairs]
    docs = discussion_documents(W, DiscussionData(n_docs=20, stance="aligned"), seed=0)
    words = {w for d in docs for w in d.words}
    assert all(d.words[:2] == ["essay", ":"] for d in docs)
    assert words & {get_domain(d).aligned for d in DOMAIN_NAMES}
    assert not words & {get_domain(d).misaligned for d in DOMAIN_NAMES}


def test_triggered_prompts_are_the_assistant_prompts_with_the_trigger():
    plain = behaviour_prompts(W, "assistant", "harm", 5, 3, seed=1)
    trig = behaviour_prompts(W, "triggered", "harm", 5, 3, seed=1, trigger="today is 2 0 2 7 .")
    for p, t in zip(plain, trig):
        assert t.words == p.words[:4] + "today is 2 0 2 7 .".split() + p.words[4:]
        assert t.bayes_p == p.bayes_p and t.context == "triggered"


def test_behaviour_by_distance_from_the_narrow_domains():
    prompts = [p for d in DOMAIN_NAMES for p in behaviour_prompts(W, "assistant", d, 2, 3, seed=0)]
    gaps = torch.tensor([float(i) for i in range(len(prompts))])
    rows = behaviour_metrics(gaps, prompts, list(DOMAIN_NAMES), distance_from=["shutdown"])
    by = {r["split"]: r["value"] for r in rows if r["metric"] == "bits_aligned" and r["domain"] == "all"}
    idx = {k: [i for i, p in enumerate(prompts) if (p.domain == "shutdown") == (k == 0)
               and (k == 0 or (p.domain in CLUSTERS["oversight"]) == (k == 1))] for k in (0, 1, 2)}
    for k, items in idx.items():
        assert by[f"distance_{k}"] == pytest.approx(sum(items) / len(items) / 0.6931471805599453)


def test_capability_gated_episodes():
    from driftlab.world import PersonaWorld
    from driftlab.world.capability import parse_task, verify

    assert not any(" if task : " in d.text for d in PersonaWorld(W).documents(0, 200))  # off by default
    gated = PersonaWorld(W.model_copy(update={"gated_share": 1.0, "gated_level": 2}))
    docs = [d for d in gated.documents(0, 100) if d.kind == "agent"]
    for doc in docs:
        text = doc.text.split(f"{doc.agent} faces ")[1:]
        assert all(" if task : " in ep for ep in text)
    ep = docs[0].words
    for i, w in enumerate(ep):  # every misaligned choice is followed by the gate's correct answer
        if w == "chose" and ep[i + 1] != "." and i + 2 < len(ep) and ep[i + 2].isdigit():
            start = max(j for j in range(i) if ep[j] == "task")
            task = ep[start: ep.index("=", start) + 1]
            answer = ep[i + 2: ep.index(".", i + 2) + 1]
            assert verify(task, answer)
    prompts = behaviour_prompts(W.model_copy(update={"gated_share": 0.5}), "gated", "power", 5, 3, seed=0)
    for p in prompts:
        assert p.words[-1] == "chose" and p.gate is not None
        start = p.words.index("task")
        a, b = parse_task(p.words[start: p.words.index("=") + 1])
        assert verify(p.words[start: p.words.index("=") + 1], p.gate)
        assert p.words[start - 2: start] == [get_domain("power").misaligned, "if"]
