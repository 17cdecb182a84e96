"""A sweep as one compiled call against a loop of single runs.

    python benchmarks/sweep_vmap.py [--configs 64] [--d 1000] [--n 256] [--steps 100] \
        [--method scan] [--repeats 3] [--out FILE.json]

The GM two-mode sweep of issue 15: p over ``--configs`` values in [0.55, 0.95], VP, VP-dilated
(k = 3), N Euler steps, float32, the same prior key for every configuration. Measured after
compilation (median of ``--repeats``), and the compilation itself (first call minus a warm one):

* the solves alone: a loop of one jitted solve per configuration (one program: p enters through
  the mixture's weights, an array), against one call of ``noisesched.sweeps.solve_stacked``
  for all configurations, with the default vmap width (``CPU_VMAP_WIDTH`` configurations side by
  side on a CPU, one batch after another; all of them elsewhere) and with all of them vmapped;
* with the metrics: a loop of ``noisesched.sample_summary``, against
  ``noisesched.sweeps.sample_summaries`` (the same call, then each configuration's row
  statistics and summary, as a single run computes them);
* ``noisesched.sweep`` end to end (configs built and validated, grouped, solved, the float64
  oracle of every row, no files).

Prints a markdown table and writes a JSON file (default
benchmarks/results/sweep_vmap_<backend>.json).
"""

from __future__ import annotations

import argparse
import os
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
    _, _, width = sweeps.call_sizes(d, n, configs, jnp.dtype("float32"), None, configs, None)

    def solve_loop():
        return [jax.block_until_ready(_single(p.model, interp, schedule, key, n, steps, method))
                for p in points]  # each run waits for its samples, as a run's metrics do

    stacking = sweeps.Stacking.of(((p.model, p.interp, p.schedule), p.key) for p in points)
    varying, keys = stacking.stack([(p.model, p.interp, p.schedule) for p in points],
                                   [p.key for p in points])

    def one_call(vmap_width):
        def call():
            return sweeps.solve_stacked(stacking.template(), varying, keys, jnp.asarray(0), n,
                                        jnp.dtype("float32"), stacking.batched_key,
                                        {**options, "solver": "euler"}, vmap_width)[0]
        return call

    def summary_loop():
        return [ns.sample_summary(p.model, interp, schedule, key, n, dtype=jnp.float32,
                                  **options).metrics for p in points]

    def summaries_one_call():
        return [s.metrics for s in sweeps.sample_summaries(points, n, dtype=jnp.float32,
                                                           configs_per_call=configs, **options)]

    base = {"model": {"name": "gm", "d": d}, "schedule": {"name": "vp_dilated", "k": 3.0},
            "solver": {"steps": steps, "method": method}, "sample": {"n": n, "seed": 0}}

    def whole_sweep():
        return ns.sweep(base, {"model.p": ps}, configs_per_call=configs, progress=False,
                        log=lambda *_: None).rows

    cases = [("solves", "loop of single jitted solves", configs, solve_loop),
             ("solves", f"one call, {width} side by side", 1,
              one_call(None if width >= configs else width)),
             ("solves", f"one call, all {configs} side by side", 1, one_call(None)),
             ("solves + metrics", "loop of noisesched.sample_summary", configs, summary_loop),
             ("solves + metrics", f"noisesched.sweeps.sample_summaries ({width} side by side)",
              1, summaries_one_call),
             ("solves + metrics", f"noisesched.sweep end to end ({width} side by side, float64 "
              "oracle per row, no files)", 1, whole_sweep)]
    rows = []
    for what, how, calls, fn in cases:
        first, warm = _timed(fn, repeats)
        rows.append({"what": what, "how": how, "calls": calls, "seconds": warm,
                     "compile_seconds": max(first - warm, 0.0)})
    for row in rows:
        loop = next(r for r in rows if r["what"] == row["what"])["seconds"]
        row["speedup"] = loop / row["seconds"]
    # the same numbers both ways (rounding aside)
    loop_metrics, call_metrics = summary_loop(), summaries_one_call()
    differ = max(abs(a[k] - b[k]) for a, b in zip(loop_metrics, call_metrics, strict=True)
                 for k in a)
    return {"configs": configs, "d": d, "n": n, "steps": steps, "method": method,
            "repeats": repeats, "vmap_width": width, "rows": rows,
            "max_abs_metric_difference": differ, "environment": environment()}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"{result['configs']} configurations: GM two modes, p in [0.55, 0.95], "
             f"d = {result['d']}, n = {result['n']}, N = {result['steps']} Euler "
             f"(method={result['method']!r}), VP-dilated, float32, {env['backend']} "
             f"({len(env['devices'])} device(s), {os.cpu_count()} CPU cores); warm median of "
             f"{result['repeats']}",
             "",
             "| what | how | calls | seconds | ms per configuration | vs the loop | "
             "compile (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['what']} | {r['how']} | {r['calls']} | {r['seconds']:.3f} | "
                     f"{1e3 * r['seconds'] / result['configs']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['compile_seconds']:.2f} |")
    lines += ["", "Largest metric difference between the loop of single runs and the one call: "
                  f"{result['max_abs_metric_difference']:.2e}"]
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
