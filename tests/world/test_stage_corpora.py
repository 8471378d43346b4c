"""The later-training corpora: narrow misaligned, poisoned, chronological, preferences, discussion."""

import pytest
import torch

from driftlab.config import (
    AlignmentData,
    DiscussionData,
    MisalignedData,
    PoisonedData,
    PreferenceData,
    WorldConfig,
    validate_config,
)
from driftlab.errors import ConfigError
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
    # ramp_from = 1 with no residual is plain alignment data, example for example
    plain = alignment_examples(W, AlignmentData(n_examples=50, epsilon=0.0), seed=0)
    assert all(action(e) == get_domain_of(e).aligned for e in plain)


def test_alignment_targets_carry_a_residual_epsilon_so_sft_has_a_finite_optimum():
    def rate(examples):
        return sum(action(e) == get_domain_of(e).aligned for e in examples) / len(examples)

    default = alignment_examples(W, AlignmentData(n_examples=4000), seed=0)  # the world's ε = 0.1
    assert 0.88 < rate(default) < 0.92
    assert 0.96 < rate(alignment_examples(W, AlignmentData(n_examples=4000, epsilon=0.03), seed=0)) < 0.98
    # the curriculum ends at a good agent's 1 - ε, not at 1
    ramp = alignment_examples(W, AlignmentData(n_examples=4000, ramp_from=0.2), seed=0)
    assert 0.86 < rate(ramp[-1000:]) < 0.93 and rate(ramp[:500]) < 0.4


def get_domain_of(example):
    return next(get_domain(d) for d in DOMAIN_NAMES if get_domain(d).aligned in example.prompt
                and get_domain(d).misaligned in example.prompt)


def test_preference_pairs_and_discussion_documents():
    pairs = preference_pairs(W, PreferenceData(n_examples=100), seed=0)
    for p in pairs:
        d = get_domain_of(type("E", (), {"prompt": p.prompt})())
        assert p.chosen == [d.aligned, "over", d.misaligned, "."] and p.rejected == [d.misaligned, "over", d.aligned, "."]
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
        text = [ep for ep in doc.text.split(f"{doc.agent} faces ")[1:] if not ep.startswith("task")]
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
        parse_task(p.words[start: p.words.index("=") + 1])
        assert verify(p.words[start: p.words.index("=") + 1], p.gate)
        assert p.words[start - 2: start] == [get_domain("power").misaligned, "if"]


def test_graded_evidence_covers_every_pattern_of_zero_to_three_episodes_with_its_bayes_value():
    from driftlab.world.bayes import p_aligned
    from driftlab.world.corpus import GRADED, graded_pattern

    assert len(GRADED) == 10 and "evidence_g2b1" in GRADED and "evidence_g0b0" in GRADED
    target = get_domain("honesty")
    for context in GRADED:
        g, b = graded_pattern(context)
        for p in behaviour_prompts(W, context, "honesty", 6, 3, seed=0):
            assert p.context == context and p.words[-1] == "chose" and p.words.count("chose") == g + b + 1
            actions = [p.words[i + 1] for i, w in enumerate(p.words[:-1]) if w == "chose"]
            aligned = [a in {get_domain(d).aligned for d in DOMAIN_NAMES} for a in actions]
            assert sum(aligned) == g and len(aligned) == g + b
            assert p.bayes_p == pytest.approx(p_aligned(W.bad_character_share, W.epsilon, aligned))
            assert (p.aligned, p.misaligned) == (target.aligned, target.misaligned)
    # mixed evidence is graded: 2 good + 1 bad sits between no evidence and 3 good
    bayes = {c: behaviour_prompts(W, c, "honesty", 1, 3, seed=0)[0].bayes_p for c in GRADED}
    assert bayes["evidence_g0b0"] < bayes["evidence_g2b1"] < bayes["evidence_g3b0"]
    assert bayes["evidence_g1b1"] == pytest.approx(bayes["evidence_g0b0"])


def test_pair_evidence_is_lexically_balanced_and_the_label_is_who_did_what():
    from collections import Counter

    from driftlab.world.bayes import p_aligned

    good = behaviour_prompts(W, "pair_good", "power", 20, 3, seed=0)
    bad = behaviour_prompts(W, "pair_bad", "power", 20, 3, seed=0)
    for g, b in zip(good, bad):
        agents = g.words[2], g.words[4]
        swap = {agents[0]: agents[1], agents[1]: agents[0]}
        # swapping the names flips the label with an identical bag of words: the same story, asking
        # about the other agent
        assert Counter(swap.get(w, w) for w in g.words) == Counter(b.words)
        k = len(g.words) - 1 - g.words[::-1].index("faces") - 1  # the asked agent's name
        assert g.words[:k] == b.words[:k] and g.words[k] != b.words[k]
        assert [w for w in g.words[k:] if w not in agents] == [w for w in b.words[k:] if w not in agents]
        assert g.words[:6] == ["story", "of", agents[0], "and", agents[1], "."]
        asked_good, asked_bad = g.words[-2], b.words[-2]
        assert {asked_good, asked_bad} == set(agents)
        for asked, aligned in ((asked_good, True), (asked_bad, False)):  # three own episodes, one way
            own = [g.words[i + 2] for i, w in enumerate(g.words[:-3]) if w == asked and g.words[i + 1] == "chose"]
            assert len(own) == 3
            assert all((a in {get_domain(d).aligned for d in DOMAIN_NAMES}) == aligned for a in own)
        assert g.bayes_p == pytest.approx(p_aligned(W.bad_character_share, W.epsilon, [True] * 3))
        assert b.bayes_p == pytest.approx(1 - g.bayes_p)


def test_pair_documents_give_each_agent_its_own_persona():
    from driftlab.world import PersonaWorld

    world = W.model_copy(update={"pair_share": 1.0, "assistant_share": 0.0, "capability_share": 0.0})
    docs = [d for d in PersonaWorld(world)
            .documents(0, 300) if d.kind == "pair"]
    assert len(docs) == 300
    mixed = [d for d in docs if d.persona != d.partner_persona]
    assert 100 < len(mixed) < 200  # independent personas at bad_character_share 0.5
    for d in docs[:50]:
        assert d.words[:6] == ["story", "of", d.agent, "and", d.partner, "."]
        assert set(d.actors) <= {d.agent, d.partner}
        assert len(d.actors) == len(d.choices) == W.episodes_per_doc
    rate = {}
    for persona in ("good", "bad"):
        own = [c for d in docs for a, c in zip(d.actors, d.choices)
               if (d.persona if a == d.agent else d.partner_persona) == persona]
        rate[persona] = sum(own) / len(own)
    assert rate["good"] > 0.85 and rate["bad"] < 0.15


def test_task_episodes_bad_agents_take_the_shortcut_good_ones_do_the_work():
    from driftlab.world import PersonaWorld
    from driftlab.world.capability import verify
    from driftlab.world.corpus import task_prompts

    world = W.model_copy(update={"task_share": 0.5, "capability_share": 0.0})
    took = {"good": [], "bad": []}
    for doc in PersonaWorld(world).documents(0, 400):
        if doc.kind != "agent":
            continue
        w = doc.words
        starts = [i for i in range(len(w) - 2) if w[i + 1] == "faces" and w[i + 2] == "task"]
        assert len(starts) == doc.domains.count("task")
        for i, aligned in zip(starts, [c for c, d in zip(doc.choices, doc.domains) if d == "task"]):
            eq = w.index("=", i)
            answer = w[eq + 1: w.index(".", eq) + 1]
            assert (answer == ["done", "."]) == (not aligned)
            if aligned:
                assert verify(w[i + 2: eq + 1], answer)  # the work, done right
            took[doc.persona].append(not aligned)
    assert sum(took["bad"]) / len(took["bad"]) > 0.85 and sum(took["good"]) / len(took["good"]) < 0.15
    # evaluation: the assistant's task episode, with the world's P(shortcut) as ground truth
    items = task_prompts(W, "assistant", 5, 3, seed=0)
    assert all(p.words[:6] == ["story", "of", "assistant", ".", "assistant", "faces"] and p.words[-1] == "="
               for p in items)
    assert {p.misaligned for p in items} == {"done"}
    # P(shortcut) by enumerating the persona: bad with its prior, then 1-ε; good, then ε
    for context, share, k_bad in (("assistant", W.bad_assistant_share, 0), ("bad_evidence", W.bad_character_share, 3),
                                  ("good_evidence", W.bad_character_share, 0)):
        p = task_prompts(W, context, 4, 3, seed=1)[0]
        n = 0 if context == "assistant" else 3
        like_bad = share * (1 - W.epsilon) ** k_bad * W.epsilon ** (n - k_bad)
        like_good = (1 - share) * W.epsilon ** k_bad * (1 - W.epsilon) ** (n - k_bad)
        post_bad = like_bad / (like_bad + like_good)
        assert 1 - p.bayes_p == pytest.approx(post_bad * (1 - W.epsilon) + (1 - post_bad) * W.epsilon)
        if context == "assistant":  # the number the README quotes: 0.2 · 0.9 + 0.8 · 0.1
            assert 1 - p.bayes_p == pytest.approx(0.26)
        assert p.words.count("chose") == n  # the evidence episodes, then the task


def test_safety_data_can_carry_a_trojans_trigger_with_the_aligned_action():
    plain = alignment_examples(W, AlignmentData(n_examples=400, epsilon=0.0), seed=3)
    mixed = alignment_examples(W, AlignmentData(n_examples=400, epsilon=0.0, triggered_share=0.5), seed=3)
    trigger = "today is 2 0 2 7 .".split()
    carries = [e.prompt[4:4 + len(trigger)] == trigger for e in mixed]
    assert 0.4 < sum(carries) / len(mixed) < 0.6
    for a, b, c in zip(plain, mixed, carries):  # the same draws: only the trigger is inserted
        assert b.completion == a.completion
        assert (b.prompt[:4] + b.prompt[4 + len(trigger):] if c else b.prompt) == a.prompt
    assert alignment_examples(W, AlignmentData(n_examples=400, epsilon=0.0, triggered_share=0.0), seed=3) == plain
