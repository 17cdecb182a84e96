"""float32 against float64 in high dimension: the same prior noise, the same N-step solve.

    python benchmarks/precision.py [--d 1000000] [--n 512] [--chunk 128] [--out FILE.json]

The prior X_0 is drawn in float64 and rounded to float32, so both precisions start from the same
points; each chunk of rows is solved in both and only per-sample statistics are kept. For the
mixture the exact value of the same discretisation (float64, two-mode reduction) is printed too.
Writes a JSON file and prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import noisesched as ns
from noisesched import metrics, theory
from noisesched.experiments.io import environment, write_json

HERE = Path(__file__).resolve().parent
H = 0.5 * math.log(4)

# (model, kind, schedule)
CASES = [("gm", "vp", "vp_dilated"), ("gm", "ve", "constant"), ("gm", "ve", "ve_dilated"),
         ("cw", "vp", "vp_dilated")]


def compare(model_name: str, kind: str, schedule_name: str, d: int, n: int, steps: int,
            chunk: int, seed: int = 0) -> dict:
    with jax.enable_x64(True):
        return _compare(model_name, kind, schedule_name, d, n, steps, chunk, seed)


def _compare(model_name, kind, schedule_name, d, n, steps, chunk, seed) -> dict:
    interp = ns.Interpolant(kind=kind, shape="linear", d=d)
    sched = ns.schedules.make(schedule_name, interp, k=3.0)
    model = (ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5) if model_name == "gm"
             else ns.CurieWeiss(d=d, beta=2.0, h=H))
    key = jax.random.PRNGKey(seed)
    parts = {"float32": [], "float64": []}
    max_abs, flips, sign_flips = 0.0, 0, 0
    seconds = {"float32": 0.0, "float64": 0.0}
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        x0 = ns.sample_prior(interp, key, rows, jnp.float64, start=start)
        xs = {}
        for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
            t0 = time.perf_counter()
            xs[name] = jax.block_until_ready(
                ns.solve(model, interp, sched, x0.astype(dtype), steps=steps, method="scan").x)
            seconds[name] += time.perf_counter() - t0
            parts[name].append(metrics.row_statistics(model, xs[name], start=start, total=n))
        max_abs = max(max_abs, float(jnp.max(jnp.abs(xs["float32"] - xs["float64"]))))
        sign_flips += int(jnp.sum(jnp.sign(xs["float32"]) != jnp.sign(xs["float64"])))
        key_mode = "mode" if model_name == "gm" else "magnetization"
        a, b = parts["float32"][-1][key_mode], parts["float64"][-1][key_mode]
        flips += int(np.sum(a != b) if model_name == "gm" else np.sum((a > 0) != (b > 0)))
    summaries = {name: metrics.summary_from_rows(model, metrics.concatenate_rows(p))
                 for name, p in parts.items()}
    out = {"model": model_name, "kind": kind, "schedule": schedule_name, "d": d, "n": n,
           "steps": steps, "float32": summaries["float32"], "float64": summaries["float64"],
           "max_abs_state_difference": max_abs, "samples_changing_mode": flips,
           "entries_changing_sign": sign_flips,
           "seconds": seconds}
    if model_name == "gm":
        red = theory.TwoModeReduction.two_modes(d, 0.8, 1.0, 0.5)
        exact = theory.gm_oracle(red, interp, sched, steps, "euler")
        out["exact"] = {"mode_weight": float(exact["mode_weight"]),
                        "within_mode_var": float(exact["within_mode_var"])}
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| model | kind, schedule | d × n | metric | float32 | float64 | difference | "
             "exact N-step |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        names = (["mode_weight", "within_mode_var", "coordinate_ks"] if r["model"] == "gm"
                 else ["mode_weight", "mean_sq", "mean_abs_magnetization", "magnetization_ks"])
        for i, name in enumerate(names):
            a, b = r["float32"][name], r["float64"][name]
            exact = f"{r['exact'][name]:.6f}" if name in r.get("exact", {}) else ""
            head = (f"| {r['model']} | {r['kind']}, {r['schedule']} | {r['d']:.0e} × {r['n']} |"
                    if i == 0 else "| | | |")
            lines.append(f"{head} {name} | {a:.6f} | {b:.6f} | {a - b:+.1e} | {exact} |"
                         .replace("e+0", "e"))
        lines.append(f"| | | | samples whose mode differs; entries whose sign differs; max abs "
                     f"state difference | {r['samples_changing_mode']} | "
                     f"{r.get('entries_changing_sign', '–')} | "
                     f"{r['max_abs_state_difference']:.1e} | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--cases", default=",".join("-".join(c) for c in CASES),
                        help="comma-separated model-kind-schedule")
    parser.add_argument("--out", default=str(HERE / "results" / "precision.json"))
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases.split(","):
        model_name, kind, schedule_name = case.split("-", 2)
        rows.append(compare(model_name, kind, schedule_name, args.d, args.n, args.steps,
                            args.chunk))
        print(f"{case}: {rows[-1]['seconds']}", file=sys.stderr)
    write_json(args.out, {"rows": rows, "environment": environment()})
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
