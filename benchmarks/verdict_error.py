"""The README's tables of verdict error: each side's miss rate per statistic kind and seed count, and
the sequential design's error and power (``python benchmarks/verdict_error.py [experiments]``).

Prints Markdown. Deterministic for a given number of experiments (fixed seeds); ~10 minutes on 2
cores at the default 40,000 experiments per cell.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats as st

from driftlab.experiments.design import Design, simulate, z_boundaries
from driftlab.experiments.simulate import KINDS, LEVEL_SHARE, one_sided_misses, sequential_misses


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def one_sided_table(experiments: int) -> None:
    print("| statistic | its interval | seeds | lower side misses | upper side misses | plain jackknife-t, "
          "full level (lower / upper) |\n|---|---|---|---|---|---|")
    for kind, (_what, _, stat, *_rest) in KINDS.items():
        method = type(stat).__name__ if type(stat).__name__ in ("Ratio", "Log") else "t"
        method = {"Ratio": "Fieller", "Log": "t on logs", "t": "jackknife-t"}[method]
        if kind in LEVEL_SHARE:
            method += f" at {LEVEL_SHARE[kind]:g} of the level"
        for n in (3, 6, 10):
            lo, hi = one_sided_misses(kind, n, experiments, seed=2026)
            nlo, nhi = one_sided_misses(kind, n, experiments, seed=2026, naive=True)
            print(f"| {kind} | {method} | {n} | {pct(lo)} | {pct(hi)} | {pct(nlo)} / {pct(nhi)} |", flush=True)
    print(f"\n({experiments:,} simulated experiments per cell: a 2.5% rate has a standard error of "
          f"{100 * np.sqrt(0.025 * 0.975 / experiments):.2f}%.)")


def sequential_table(experiments: int) -> None:
    print("\n| design | nominal levels per look | error above / below over all looks | with futility | "
          "MDE (per-seed spreads) | power at the MDE |\n|---|---|---|---|---|---|")
    for looks, spending in (((3, 6, 10), "obf"), ((3, 6, 10), "pocock"), ((3, 6), "obf"), ((5, 10), "obf")):
        d = Design(looks, spending)
        null = simulate(d, 0.0, experiments=experiments * 5, seed=1)
        mde = d.mde()
        alt = simulate(d, mde, experiments=experiments, seed=2)
        levels = ", ".join(f"{d.nominal(k):.2g}" for k in range(len(looks)))
        print(f"| {', '.join(map(str, looks))} ({spending}) | {levels} | {pct(null['accept_above'])} / "
              f"{pct(null['accept_below'])} | {pct(null['accept_above_with_futility'])} / "
              f"{pct(null['accept_below_with_futility'])} | {mde:.2f} | {pct(alt['accept_above_with_futility'])} |",
              flush=True)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (experiments * 5, 10))
    every, zlev = np.zeros(len(x), bool), np.zeros(len(x), bool)
    z = z_boundaries((0.3, 0.6, 1.0), 0.025, "obf")[0]
    for n in range(3, 11):
        t = x[:, :n].mean(1) / (x[:, :n].std(1, ddof=1) / np.sqrt(n))
        every |= st.t.sf(t, n - 1) <= 0.025
        if n in (3, 6, 10):
            zlev |= st.t.sf(t, n - 1) <= st.norm.sf(z[(3, 6, 10).index(n)])
    for kind in LEVEL_SHARE:
        above, below = sequential_misses(kind, experiments=experiments // 4, seed=4)
        print(f"\n{kind} (at {LEVEL_SHARE[kind]:g} of the level), 3, 6, 10 (obf), effect on the threshold: error "
              f"above / below over all looks {pct(above)} / {pct(below)} ({experiments // 4:,} experiments).")
    print(f"\nFor comparison, at an effect on the threshold: a test after every seed from 3 to 10 "
          f"accepts the upper side {pct(every.mean())} of the time; the z boundaries' levels applied to "
          f"t statistics at 3/6/10 seeds {pct(zlev.mean())}.")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    one_sided_table(n)
    sequential_table(n)
