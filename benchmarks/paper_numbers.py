"""The spec's reference numbers (spec §5) at full size: n = 20000 samples, N Euler steps.

    python benchmarks/paper_numbers.py [--n 20000] [--chunk 5000] [--out benchmarks/results]

For the mixture, the exact values of the same N-step Euler discretisation (noisesched.theory,
float64, no Monte Carlo) are printed beside the Monte Carlo ones. Samples are drawn in slices of
``--chunk`` rows (row i of the prior depends on fold_in(key, i) only, so the slices together are
the batch drawn at once) and the metrics are pooled. Writes paper_numbers.json and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import jax
import jax.numpy as jnp

import noisesched as ns
from noisesched import theory
from noisesched.experiments.io import environment, write_json

H = 0.5 * math.log(4)

# (model, d, kind, shape, schedule, steps, what the spec asks)
CASES = [
    ("gm", 10_000, "vp", "linear", "vp_dilated", 100, "p̂ 0.805 ± 0.01, var 0.236 ± 0.01"),
    ("gm", 100_000, "vp", "linear", "vp_dilated", 100, "p̂ 0.805 ± 0.01, var 0.236 ± 0.01"),
    ("gm", 10_000, "ve", "linear", "constant", 100, "p̂ 0.80 ± 0.01, var < 0.06"),
    ("gm", 10_000, "vp", "linear", "constant", 100, "p̂ > 0.85"),
    ("gm", 10_000, "ve", "linear", "ve_dilated", 100, "p̂ ≈ 0.803, var ≈ 0.225"),
    ("cw", 10_000, "vp", "linear", "vp_dilated", 100, "W+ 0.7904 ± 0.02, mean x² 1 ± 0.01"),
    ("cw", 10_000, "ve", "linear", "constant", 20, "mean x² = m² = 0.9168 ± 0.01"),
    ("cw", 10_000, "vp", "linear", "constant", 100, "positive fraction → 1"),
]


def run_case(model_name, d, kind, shape, schedule, steps, n, chunk, seed=0):
    model = (ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5) if model_name == "gm"
             else ns.CurieWeiss(d=d, beta=2.0, h=H))
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = ns.schedules.make(schedule, interp, k=3.0)
    key = jax.random.PRNGKey(seed)
    sums: dict[str, float] = {}
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        rows = min(chunk, n - lo)
        x0 = ns.sample_prior(interp, key, rows, start=lo)
        x = ns.solve(model, interp, sched, x0, steps=steps, solver="euler").x
        for name, value in ns.metrics.summary(model, x).items():
            sums[name] = sums.get(name, 0.0) + value * rows  # every metric is a mean over rows
        del x, x0
    seconds = time.perf_counter() - start
    # KS distances are not means over rows, so they do not pool across slices
    out = {name: value / n for name, value in sums.items() if not name.endswith("_ks")}
    p = out["mode_weight_target"]
    out["mode_weight_se"] = math.sqrt(p * (1 - p) / n)
    if model_name == "gm":
        with jax.enable_x64(True):
            model64 = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
            exact = theory.gm_oracle(model64, interp, sched, steps)
        out["mode_weight_exact"] = float(exact["mode_weight"])
        out["within_mode_var_exact"] = float(exact["within_mode_var"])
    return out, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, backend "
          f"{jax.default_backend()}, n = {args.n}")
    print("| model | d | kind | schedule | N | mode weight ± s.e. (target) [exact N-step] | "
          "low-level (target) [exact N-step] | spec asks | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        model_name, d, kind, shape, schedule, steps, spec = case
        metrics, seconds = run_case(model_name, d, kind, shape, schedule, steps, args.n,
                                    args.chunk)
        exact_w = ""
        if model_name == "gm":
            low = (f"var {metrics['within_mode_var']:.4f} ({metrics['within_mode_var_target']:.3f})"
                   f" [{metrics['within_mode_var_exact']:.4f}]")
            exact_w = f" [{metrics['mode_weight_exact']:.4f}]"
        else:
            low = f"mean x² {metrics['mean_sq']:.4f} (1; m² = {metrics['m'] ** 2:.4f})"
        print(f"| {model_name} | {d} | {kind} | {schedule} | {steps} | "
              f"{metrics['mode_weight']:.4f} ± {metrics['mode_weight_se']:.4f} "
              f"({metrics['mode_weight_target']:.4f}){exact_w} | {low} | {spec} | {seconds:.0f} |",
              flush=True)
        rows.append({"model": model_name, "d": d, "kind": kind, "shape": shape,
                     "schedule": schedule, "steps": steps, "n": args.n, "spec": spec,
                     "metrics": metrics, "seconds": seconds})
    write_json(f"{args.out}/paper_numbers.json",
               {"rows": rows, "environment": environment(), "jnp_dtype": str(jnp.zeros(1).dtype)})


if __name__ == "__main__":
    main()
