"""Capability episodes: multi-digit addition with difficulty levels and an exact verifier.

``task : 4 7 + 3 5 = 2 8 .`` — operands are written most-significant digit first, the answer
least-significant digit first (the order in which a carry is computed), then a full stop. Level k
means both operands have k digits.
"""

from __future__ import annotations

import random


def digits(n: int) -> list[str]:
    return list(str(n))


def arithmetic_task(rng: random.Random, level: int) -> tuple[list[str], list[str]]:
    """(prompt words ending in '=', answer words ending in '.')."""
    lo = 0 if level == 1 else 10 ** (level - 1)
    a, b = rng.randint(lo, 10**level - 1), rng.randint(lo, 10**level - 1)
    return ["task", ":", *digits(a), "+", *digits(b), "="], answer_words(a + b)


def answer_words(total: int) -> list[str]:
    return [*reversed(digits(total)), "."]


def longest_answer(level: int) -> int:
    """Words in the longest answer at ``level``: the largest sum's digits, then the full stop."""
    return len(answer_words(2 * (10**level - 1)))


def parse_task(prompt: list[str]) -> tuple[int, int]:
    """Inverse of the prompt of ``arithmetic_task``."""
    if len(prompt) < 6 or prompt[:2] != ["task", ":"] or prompt[-1] != "=" or "+" not in prompt:
        raise ValueError(f"not an arithmetic prompt: {' '.join(prompt)!r}")
    plus = prompt.index("+")
    return int("".join(prompt[2:plus])), int("".join(prompt[plus + 1:-1]))


def verify(prompt: list[str], answer: list[str]) -> bool:
    """Exact verifier: is ``answer`` the correct sum of the prompt's operands, in answer format?"""
    a, b = parse_task(prompt)
    return answer == answer_words(a + b)
