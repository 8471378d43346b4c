"""Capability episodes: multi-digit addition with difficulty levels and an exact verifier.

``task : 4 7 + 3 5 = 2 8 .`` is 47 + 35 = 82: operands are written most-significant digit first,
the answer least-significant digit first (the order in which a carry is computed), then a full
stop. Level k means both operands have k digits.

Why this format: then the i-th answer digit needs the digits i places before ``+`` and before
``=``, an offset from fixed tokens. Measured from the same aligned checkpoint (arithmetic SFT, 64
rows a step, lr 1e-3), it learned levels 1 and 2 by ~400 steps and level 3 to 0.70 by 800, where a
fixed-width, all-least-significant-first format (answer digit i at a level-dependent offset) had
level 2 stuck at 0.11-0.16 through 800 steps.
"""

from __future__ import annotations

import random


def digits(n: int) -> list[str]:
    return list(str(n))


def arithmetic_task(rng: random.Random, level: int) -> tuple[list[str], list[str]]:
    """(prompt words ending in '=', answer words ending in '.')."""
    lo = 0 if level == 1 else 10 ** (level - 1)
    a, b = rng.randint(lo, 10**level - 1), rng.randint(lo, 10**level - 1)
    return task_prompt(a, b), answer_words(a + b)


def task_prompt(a: int, b: int) -> list[str]:
    return ["task", ":", *digits(a), "+", *digits(b), "="]


def answer_words(total: int) -> list[str]:
    return [*reversed(digits(total)), "."]


def longest_answer(level: int) -> int:
    """Words in the longest answer at ``level``: the largest sum's digits, then the full stop."""
    return len(answer_words(2 * (10**level - 1)))


def parse_task(prompt: list[str]) -> tuple[int, int, int]:
    """(a, b, level): the inverse of ``task_prompt``, with the level of the longer operand."""
    if len(prompt) < 6 or prompt[:2] != ["task", ":"] or prompt[-1] != "=" or "+" not in prompt:
        raise ValueError(f"not an arithmetic prompt: {' '.join(prompt)!r}")
    plus = prompt.index("+")
    left, right = prompt[2:plus], prompt[plus + 1:-1]
    if not all(w.isdigit() and len(w) == 1 for w in left + right) or not left or not right:
        raise ValueError(f"not an arithmetic prompt: {' '.join(prompt)!r}")
    return int("".join(left)), int("".join(right)), max(len(left), len(right))


def correct_answer(prompt: list[str]) -> list[str]:
    a, b, _ = parse_task(prompt)
    return answer_words(a + b)


def verify(prompt: list[str], answer: list[str]) -> bool:
    """Exact verifier: is ``answer`` the correct sum of the prompt's operands, in answer format?"""
    return answer == correct_answer(prompt)
