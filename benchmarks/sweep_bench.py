"""Sweep wall times (part of ``make bench``): an 8-point quick sweep with 1 and 2 local workers
(the ratio this machine gives parallel workers) and on a local Ray cluster (Ray's overhead as a
ratio), each on a fresh prefix cache; then the per-run cost, and what grids of 10, 100 and 1,000
points would cost here, on a 64-core box and on a Ray cluster of such boxes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = Path(__file__).parent / "sweep8.yaml"


def timed_sweep(backend: str, workers: int, tmp: Path) -> dict:
    out, cache = tmp / f"{backend}-{workers}", tmp / f"cache-{backend}-{workers}"
    env = {**os.environ, "DRIFTLAB_PREFIX_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "driftlab.cli", "sweep", str(GRID), "--backend", backend, "--workers",
                        str(workers), "--out", str(out), "--no-report"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed ({backend}, {workers}): {r.stderr[-2000:]}")
    runs = [json.loads(p.read_text()) for p in out.rglob("seed-*/timings.json")]
    return {"wall_s": wall, "run_wall_s": sum(t["wall_s"] for t in runs), "runs": len(runs), "out": out}


def main() -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="driftlab-sweep-bench-") as d:
        tmp = Path(d)
        one = timed_sweep("local", 1, tmp)
        two = timed_sweep("local", 2, tmp)
        ray = timed_sweep("ray", 1, tmp)
    points = 8
    print(f"\nsweep of {points} points ({GRID.name}: {one['runs']} run directories, shared prefixes as tasks), "
          f"{cores} cores:")
    print(f"  local, 1 worker x {cores} threads: {one['wall_s']:.0f} s")
    print(f"  local, 2 workers x {max(1, cores // 2)} thread(s): {two['wall_s']:.0f} s "
          f"(2 workers {one['wall_s'] / two['wall_s']:.2f}x faster than 1)")
    print(f"  ray (local cluster), 1 task at a time x {cores} CPUs: {ray['wall_s']:.0f} s "
          f"(ray / local at 1 worker: {ray['wall_s'] / one['wall_s']:.2f}x, cluster start included)")
    per_point = one["wall_s"] / points
    print(f"  per point (1 worker, whole machine): {per_point:.1f} s wall, of which the runs' last stages "
          f"{one['run_wall_s'] / points:.1f} s (the rest: the shared prefix task, worker start, combining)")
    print(f"\nprojected wall time for grids of such points (per point {per_point:.1f} s with {cores} cores; a "
          f"64-core box runs 32 workers of 2 threads, each as fast as this machine's one; a Ray cluster of N such "
          f"boxes N x 32, times Ray's overhead {ray['wall_s'] / one['wall_s']:.2f}x):")
    print(f"{'points':>8}{'this machine':>16}{'64-core box':>14}{'Ray, 4 boxes':>14}{'Ray, 16 boxes':>15}")
    over = ray["wall_s"] / one["wall_s"]
    for n in (10, 100, 1000):
        here = n * per_point
        box = here * max(cores, 2) / 64
        print(f"{n:>8}{_t(here):>16}{_t(box):>14}{_t(box / 4 * over):>14}{_t(box / 16 * over):>15}")


def _t(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


if __name__ == "__main__":
    main()
