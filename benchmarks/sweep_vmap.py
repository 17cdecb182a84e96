"""A sweep as one vmapped call against a loop of single runs.

    python benchmarks/sweep_vmap.py [--configs 64] [--d 1000] [--n 256] [--steps 100] \
        [--method scan] [--repeats 3] [--out FILE.json]

The GM two-mode sweep of issue 15: p over ``--configs`` values in [0.55, 0.95], VP, VP-dilated
(k = 3), N Euler steps, float32, the same prior key for every configuration. Measured after
compilation (median of ``--repeats``), and the compilation itself (first call minus a warm one):

* the solves alone: a loop of one jitted solve per configuration (one program: p enters through
  the mixture's weights, an array), against one call of ``noisesched.sweeps.solve_stacked``,
  ``jax.vmap`` over the configurations;
* with the metrics: a loop of ``noisesched.sample_summary``, against
  ``noisesched.sweeps.sample_summaries`` (the vmapped solve, then each configuration's row
  statistics and summary, as a single run computes them);
* ``noisesched.sweep`` end to end (configs built and validated, grouped, solved, the float64
  oracle of every row, no files).

Prints a markdown table and writes a JSON file (default
benchmarks/results/sweep_vmap_<backend>.json).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import noisesched as ns
from noisesched import sweeps
from noisesched.experiments.io import environment, write_json

HERE = Path(__file__).resolve().parent


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` further calls), seconds, results ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


@eqx.filter_jit
def _single(model, interp, schedule, key, n, steps, method):
    x0 = ns.sample_prior(interp, key, n, jnp.float32, schedule=schedule)
    return ns.solve(model, interp, schedule, x0, steps=steps, method=method).x


def measure(configs: int = 64, d: int = 1000, n: int = 256, steps: int = 100,
            method: str = "scan", repeats: int = 3) -> dict:
    ps = [float(p) for p in np.linspace(0.55, 0.95, configs)]
    interp = ns.Interpolant("vp", "linear", d)
    schedule = ns.schedules.vp_dilated(d, 3.0)
    key = jax.random.PRNGKey(0)
    points = [sweeps.Point(ns.GaussianMixture.two_modes(d, p=p), interp, schedule, key)
              for p in ps]
    options = {"steps": steps, "method": method}

    def solve_loop():
        return [jax.block_until_ready(_single(p.model, interp, schedule, key, n, steps, method))
                for p in points]  # each run waits for its samples, as a run's metrics do

    stacking = sweeps.Stacking.of(((p.model, p.interp, p.schedule), p.key) for p in points)
    varying, keys = stacking.stack([(p.model, p.interp, p.schedule) for p in points],
                                   [p.key for p in points])

    def solve_vmapped():
        return sweeps.solve_stacked(stacking.template(), varying, keys, jnp.asarray(0), n,
                                    jnp.dtype("float32"), stacking.batched_key,
                                    {**options, "solver": "euler"})[0]

    def summary_loop():
        return [ns.sample_summary(p.model, interp, schedule, key, n, dtype=jnp.float32,
                                  **options).metrics for p in points]

    def summaries_vmapped():
        return [s.metrics for s in sweeps.sample_summaries(points, n, dtype=jnp.float32,
                                                           configs_per_call=configs, **options)]

    base = {"model": {"name": "gm", "d": d}, "schedule": {"name": "vp_dilated", "k": 3.0},
            "solver": {"steps": steps, "method": method}, "sample": {"n": n, "seed": 0}}

    def whole_sweep():
        return ns.sweep(base, {"model.p": ps}, configs_per_call=configs, progress=False,
                        log=lambda *_: None).rows

    rows = []
    for what, loop, vmapped in [("solves", solve_loop, solve_vmapped),
                                ("solves + metrics", summary_loop, summaries_vmapped)]:
        loop_first, loop_warm = _timed(loop, repeats)
        vmap_first, vmap_warm = _timed(vmapped, repeats)
        rows.append({"what": what, "loop_seconds": loop_warm, "vmapped_seconds": vmap_warm,
                     "speedup": loop_warm / vmap_warm,
                     "loop_compile_seconds": max(loop_first - loop_warm, 0.0),
                     "vmapped_compile_seconds": max(vmap_first - vmap_warm, 0.0)})
    sweep_first, sweep_warm = _timed(whole_sweep, repeats)
    # the same numbers both ways (rounding aside)
    loop_metrics, vmap_metrics = summary_loop(), summaries_vmapped()
    differ = max(abs(a[k] - b[k]) for a, b in zip(loop_metrics, vmap_metrics, strict=True)
                 for k in a)
    return {"configs": configs, "d": d, "n": n, "steps": steps, "method": method,
            "repeats": repeats, "rows": rows,
            "sweep": {"first_seconds": sweep_first, "warm_seconds": sweep_warm},
            "max_abs_metric_difference": differ, "environment": environment()}


def markdown(result: dict) -> str:
    c = result["configs"]
    lines = [f"{c} configurations: GM two modes, p in [0.55, 0.95], d = {result['d']}, "
             f"n = {result['n']}, N = {result['steps']} Euler (method={result['method']!r}), "
             f"VP-dilated, float32, {result['environment']['backend']} "
             f"({len(result['environment']['devices'])} device(s)); warm median of "
             f"{result['repeats']}",
             "",
             "| what | loop of single runs (s) | one vmapped call (s) | speed-up | "
             "compile: loop / vmapped (s) |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['what']} | {r['loop_seconds']:.3f} | {r['vmapped_seconds']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['loop_compile_seconds']:.2f} / "
                     f"{r['vmapped_compile_seconds']:.2f} |")
    s = result["sweep"]
    lines += ["", f"`noisesched.sweep` end to end (configs, groups, solve, metrics, float64 "
                  f"oracle per row, no files): {s['warm_seconds']:.3f} s warm, "
                  f"{s['first_seconds']:.2f} s first call; largest metric difference between "
                  f"the loop and the vmapped call: {result['max_abs_metric_difference']:.2e}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--d", type=int, default=1000)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--method", default="scan", choices=("scan", "diffrax"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = measure(args.configs, args.d, args.n, args.steps, args.method, args.repeats)
    out = args.out or str(HERE / "results" / f"sweep_vmap_{jax.default_backend()}.json")
    write_json(out, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
