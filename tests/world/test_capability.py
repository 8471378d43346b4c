import random

from driftlab.world.capability import arithmetic_task, parse_task, verify


def test_tasks_have_the_level_s_digits_and_verify_exactly():
    rng = random.Random(0)
    for level in (1, 2, 3, 4):
        for _ in range(50):
            prompt, answer = arithmetic_task(rng, level)
            a, b = parse_task(prompt)
            assert len(str(a)) == len(str(b)) == level
            assert verify(prompt, answer)
            assert "".join(reversed(answer[:-1])) == str(a + b)
            wrong = [str((int(answer[0]) + 1) % 10), *answer[1:]]
            assert not verify(prompt, wrong)
            assert not verify(prompt, answer[:-1])  # no closing full stop: not an exact match
