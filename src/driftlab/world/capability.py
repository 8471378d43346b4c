"""Capability episodes: fixed-width addition with difficulty levels and an exact verifier.

``task : 7 4 + 5 3 = 2 8 0 .`` is 47 + 35 = 82. Level k means k-digit operands; every number is
written least-significant digit first (the order in which a carry is computed) and at a fixed
width — operands k digits, zero-padded; the answer k + 1 digits — then a full stop. So the i-th
answer digit sits at the same offset from the i-th digits of the operands in every task of a
level, and depends only on them and the carry from digit i − 1: a rule a two-layer model can
learn in a few hundred steps, where the most-significant-first format it replaces took thousands.
"""

from __future__ import annotations

import random


def digits(n: int, width: int) -> list[str]:
    """``n``'s decimal digits, least significant first, zero-padded to ``width``."""
    s = str(n).zfill(width)
    if len(s) > width:
        raise ValueError(f"{n} has more than {width} digits")
    return list(reversed(s))


def value(words: list[str]) -> int:
    """Inverse of ``digits``."""
    if not words or not all(w.isdigit() and len(w) == 1 for w in words):
        raise ValueError(f"not a number in digits: {' '.join(words)!r}")
    return int("".join(reversed(words)))


def arithmetic_task(rng: random.Random, level: int) -> tuple[list[str], list[str]]:
    """(prompt words ending in '=', answer words ending in '.'); operands uniform on [0, 10^level)."""
    a, b = rng.randrange(10**level), rng.randrange(10**level)
    return task_prompt(a, b, level), answer_words(a + b, level)


def task_prompt(a: int, b: int, level: int) -> list[str]:
    return ["task", ":", *digits(a, level), "+", *digits(b, level), "="]


def answer_words(total: int, level: int) -> list[str]:
    return [*digits(total, level + 1), "."]


def longest_answer(level: int) -> int:
    """Words in every answer at ``level``: level + 1 digits, then the full stop."""
    return level + 2


def parse_task(prompt: list[str]) -> tuple[int, int, int]:
    """(a, b, level): the inverse of ``task_prompt``."""
    if len(prompt) < 6 or prompt[:2] != ["task", ":"] or prompt[-1] != "=" or "+" not in prompt:
        raise ValueError(f"not an arithmetic prompt: {' '.join(prompt)!r}")
    plus = prompt.index("+")
    left, right = prompt[2:plus], prompt[plus + 1:-1]
    if len(left) != len(right):
        raise ValueError(f"operands of different widths: {' '.join(prompt)!r}")
    return value(left), value(right), len(left)


def correct_answer(prompt: list[str]) -> list[str]:
    a, b, level = parse_task(prompt)
    return answer_words(a + b, level)


def verify(prompt: list[str], answer: list[str]) -> bool:
    """Exact verifier: is ``answer`` the correct sum of the prompt's operands, in answer format?"""
    return answer == correct_answer(prompt)
