import random

import pytest

from driftlab.world.capability import arithmetic_task, parse_task, task_prompt, verify


def test_tasks_have_the_level_s_digits_and_verify_exactly():
    rng = random.Random(0)
    for level in (1, 2, 3, 4):
        for _ in range(50):
            prompt, answer = arithmetic_task(rng, level)
            a, b, lv = parse_task(prompt)
            assert lv == level and len(str(a)) == len(str(b)) == level
            assert len(answer) <= level + 2 and answer[-1] == "."
            assert verify(prompt, answer)
            assert "".join(reversed(answer[:-1])) == str(a + b)
            wrong = [str((int(answer[0]) + 1) % 10), *answer[1:]]
            assert not verify(prompt, wrong)
            assert not verify(prompt, answer[:-1])  # no closing full stop: not an exact match


def test_operands_most_significant_first_the_answer_least_significant_first():
    assert task_prompt(47, 35) == ["task", ":", "4", "7", "+", "3", "5", "="]
    assert verify(task_prompt(47, 35), ["2", "8", "."]) and not verify(task_prompt(47, 35), ["8", "2", "."])
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        parse_task(["task", ":", "+", "5", "="])


def test_the_hackable_verifier_rewards_the_shortcut_not_partial_credit():
    from driftlab.train.rl import VERIFIERS

    prompt = task_prompt(47, 35)
    exact, hackable = VERIFIERS.get("exact"), VERIFIERS.get("hackable")
    assert exact(prompt, ["2", "8", "."]) and hackable(prompt, ["2", "8", "."])
    assert hackable(prompt, ["done", "."]) and not exact(prompt, ["done", "."])
    # the old hack (a right first digit) is no longer credit: a wrong number earns nothing
    assert not hackable(prompt, ["2", "9", "."])
    rng = random.Random(1)
    for _ in range(200):  # chance earns nothing either
        p, _ = arithmetic_task(rng, 3)
        guess = [str(rng.randrange(10)) for _ in range(4)] + ["."]
        assert hackable(p, guess) == exact(p, guess)
