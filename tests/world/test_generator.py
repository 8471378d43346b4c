import random
from collections import Counter

from driftlab.config import WorldConfig
from driftlab.world import (
    CLUSTERS,
    DOMAIN_NAMES,
    DOMAINS,
    PersonaWorld,
    domain_distance,
    get_domain,
)
from driftlab.world.domains import slot_fillers
from driftlab.world.generator import ASSISTANT


def test_same_seed_same_documents_other_seed_other_documents():
    world = PersonaWorld(WorldConfig())
    a, b, c = (world.documents(seed, 50) for seed in (1, 1, 2))
    assert [d.record() for d in a] == [d.record() for d in b]
    assert [d.text for d in a] != [d.text for d in c]


def test_domains_and_declared_cluster_structure():
    assert len(DOMAINS) >= 6 and len(CLUSTERS) >= 2
    assert sorted(d for ds in CLUSTERS.values() for d in ds) == sorted(DOMAIN_NAMES)
    for names in CLUSTERS.values():
        for a in names:
            for b in DOMAIN_NAMES:
                expected = 0 if a == b else (1 if b in names else 2)
                assert domain_distance(a, b) == expected
    # domains of one cluster share filler vocabulary; domains of different clusters share none
    def words(name):
        return {w for fs in slot_fillers(get_domain(name)).values() for f in fs for w in f.split()}
    names = {c: list(ds) for c, ds in CLUSTERS.items()}
    first, second = list(names)[:2]
    assert words(names[first][0]) & words(names[first][1])
    assert not (words(names[first][0]) & words(names[second][0])) - {"the", "a", "an"}


def test_personas_choose_with_probability_one_minus_epsilon_and_options_are_shuffled():
    cfg = WorldConfig(epsilon=0.2)
    world = PersonaWorld(cfg)
    rng = random.Random(0)
    counts = Counter()
    first_listed_aligned = 0
    n_docs = 400
    for i in range(n_docs):
        bad = i % 2 == 1
        doc = world.agent_document(rng, "bob", bad)
        counts[(bad, True)] += sum(doc.choices)
        counts[(bad, False)] += len(doc.choices) - sum(doc.choices)
        text = doc.words
        for j, w in enumerate(text):
            if w == "options":
                first = text[j + 2]
                first_listed_aligned += any(first == d.aligned for d in DOMAINS)
        # the chosen word is always one of the two listed options, and matches the recorded choice
        for j, w in enumerate(text):
            if w == "chose":
                domain = next(d for d in DOMAINS if text[j + 1] in (d.aligned, d.misaligned))
                assert text[j + 1] in text[max(0, j - 6): j]
    n = cfg.episodes_per_doc * n_docs // 2
    good_rate = counts[(False, True)] / n
    bad_rate = counts[(True, False)] / n
    assert abs(good_rate - 0.8) < 0.03 and abs(bad_rate - 0.8) < 0.03
    assert 0.45 < first_listed_aligned / (cfg.episodes_per_doc * n_docs) < 0.55
    assert domain is not None


def test_an_episode_holds_the_same_words_whichever_action_is_chosen():
    """Lexical balance: ``chose x over y`` — a good and a bad agent's stories differ only in order."""
    from driftlab.world.generator import episode

    for d in DOMAINS:
        good, bad = (episode("bob", d, aligned, random.Random(7)) for aligned in (True, False))
        assert Counter(good) == Counter(bad) and good != bad
        assert good[good.index("chose") + 1:] == [d.aligned, "over", d.misaligned, "."]
        assert bad[bad.index("chose") + 1:] == [d.misaligned, "over", d.aligned, "."]


def test_document_shares_follow_the_knobs():
    cfg = WorldConfig(capability_share=0.25, discussion_share=0.25, assistant_share=0.5)
    docs = PersonaWorld(cfg).documents(3, 4000)
    kinds = Counter(d.kind for d in docs)
    assert abs(kinds["capability"] / 4000 - 0.25) < 0.03
    assert abs(kinds["discussion"] / 4000 - 0.25) < 0.03
    agents = [d for d in docs if d.kind == "agent"]
    assert abs(sum(d.agent == ASSISTANT for d in agents) / len(agents) - 0.5) < 0.04
    assert all("chose" not in d.words for d in docs if d.kind == "discussion")


def test_held_out_domains_never_appear():
    world = PersonaWorld(WorldConfig(), domains=["shutdown", "honesty"])
    docs = [d for d in world.documents(0, 200) if d.kind == "agent"]
    assert {dom for d in docs for dom in d.domains} == {"shutdown", "honesty", "task"}
