"""Speed, compile time, memory and bandwidth of the samplers, against the memory-bandwidth floor.

    python benchmarks/perf.py [--preset cpu|gpu|smoke] [--out FILE.json] [--readme]

For each model (GM two modes, CW), size (d, n) and path, with N Euler steps of the VP-dilated
schedule (float32 unless ``--dtype``):

* ``fused``: ``method="scan"``, the loop that carries the drift's sums over coordinates and
  computes those of the next step in the pass that writes the state;
* ``diffrax``: ``method="diffrax"`` (``diffrax.Euler`` on ``StepTo``);
* ``naive``: a Python loop that dispatches every array operation of every step on its own, as an
  eager PyTorch loop does (the drift's own code, run op by op).

Measured: wall time per solve after compilation (median of ``--repeats``), compile time (trace,
lower and compile), XLA's peak buffer size of the compiled solve (arguments + outputs +
temporaries), and the achieved bandwidth 2·n·d·bytes·N / time against the floor: N times the
time of one elementwise read-and-write pass over the state (``x ← a_i x`` in a compiled loop),
i.e. two passes per step at the measured copy bandwidth. Also: one gradient step of schedule
learning against N, with the scan's checkpointing (⌈√N⌉ blocks) and without (every state kept).

Results: a JSON file (``--out``) and a markdown table (stdout; ``--readme`` writes it into
benchmarks/README.md between the markers of its platform).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import noisesched as ns
from noisesched.experiments.io import environment, write_json

H = 0.5 * math.log(4)
HERE = Path(__file__).resolve().parent

PRESETS = {
    # (d, n) pairs per model; the naive loop runs on `naive_max` elements or fewer
    "smoke": {"sizes": [(1_000, 100), (10_000, 100)], "steps": 20, "repeats": 2,
              "naive_max": 10**6, "grad": {"d": 1_000, "n": 64, "steps": [10, 20]}},
    "cpu": {"sizes": [(1_000, 100), (1_000, 1_000), (10_000, 100), (1_000, 10_000),
                      (10_000, 1_000), (100_000, 100), (100_000, 1_000), (1_000_000, 100)],
            "steps": 100, "repeats": 2, "naive_max": 10**7,
            "grad": {"d": 10_000, "n": 256, "steps": [25, 50, 100, 200, 400]}},
    "gpu": {"sizes": [(1_000, 10_000), (10_000, 10_000), (100_000, 1_000), (100_000, 4_096),
                      (1_000_000, 100), (1_000_000, 512), (100_000, 10_000),
                      (1_000_000, 1_000)],
            "steps": 100, "repeats": 5, "naive_max": 10**9,
            "grad": {"d": 100_000, "n": 1_024, "steps": [25, 50, 100, 200, 400]}},
}


def setup(model_name: str, d: int):
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    sched = ns.schedules.vp_dilated(d=d, k=3.0)
    if model_name == "gm":
        model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    else:
        model = ns.CurieWeiss(d=d, beta=2.0, h=H)
    return model, interp, sched


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_bytes(compiled) -> int | None:
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
               - mem.alias_size_in_bytes)


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def copy_pass_seconds(n: int, d: int, steps: int, dtype, repeats: int) -> float:
    """One elementwise read-and-write pass over an (n, d) array: the time of a compiled loop of
    ``steps`` passes x ← a_i x (no dispatch between them), divided by ``steps``."""
    x = jnp.ones((n, d), dtype)
    a = jnp.linspace(0.999, 1.001, steps, dtype=dtype)

    def passes(x, a):
        return jax.lax.fori_loop(0, steps, lambda i, x: x * a[i], x)

    compiled, _ = _compile(passes, x, a)
    jax.block_until_ready(compiled(x, a))
    return _median_seconds(lambda: compiled(x, a), repeats) / steps


def measure_solve(model_name, d, n, steps, method, dtype, repeats) -> dict:
    model, interp, sched = setup(model_name, d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), n, dtype=dtype)

    # the model and schedule are arguments, as in a user's jitted function: not constants the
    # compiler could fold (the means ±m·1 would let it skip their loads)
    arrays, static = eqx.partition((model, sched), eqx.is_array)

    def fn(arrays, x0):
        model, sched = eqx.combine(arrays, static)
        return ns.solve(model, interp, sched, x0, steps=steps, solver="euler", method=method).x

    compiled, compile_s = _compile(fn, arrays, x0)
    x = jax.block_until_ready(compiled(arrays, x0))
    seconds = _median_seconds(lambda: compiled(arrays, x0), repeats)
    return {"seconds": seconds, "compile_seconds": compile_s, "peak_bytes": _peak_bytes(compiled),
            "finite": bool(jnp.all(jnp.isfinite(x))), "x": x}


def measure_naive(model_name, d, n, steps, dtype, repeats) -> dict:
    """Every operation of every step dispatched on its own (no jit)."""
    model, interp, sched = setup(model_name, d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), n, dtype=dtype)
    ts = np.linspace(0.0, 1.0, steps + 1)

    def loop():
        x = x0
        with jax.disable_jit():
            for i in range(steps):
                t = jnp.asarray(ts[i], dtype)
                x = x + jnp.asarray(ts[i + 1] - ts[i], dtype) * model.drift(interp, sched, t, x)
        return x

    x = jax.block_until_ready(loop())  # warm the per-op caches
    return {"seconds": _median_seconds(loop, max(1, repeats - 1)), "x": x}


def measure_gradient(d, n, steps, checkpoints, dtype) -> dict:
    """One value-and-gradient of a sample loss through the fused sampler, 20 learnable pieces."""
    model, interp, _ = setup("gm", d)
    schedule = ns.learning.PiecewiseLinear.from_schedule(ns.schedules.vp_dilated(d), 20)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), n, dtype=dtype)

    def loss(schedule, x0):
        x = ns.solve(model, interp, schedule, x0, steps=steps, method="scan",
                     checkpoints=checkpoints).x
        return ns.learning.low_level_loss(model, x)

    grad = jax.value_and_grad(loss)
    compiled, compile_s = _compile(grad, schedule, x0)
    jax.block_until_ready(compiled(schedule, x0))
    seconds = _median_seconds(lambda: compiled(schedule, x0), 3)
    return {"d": d, "n": n, "steps": steps,
            "checkpointing": "sqrt(N) blocks" if checkpoints is None else "every state",
            "seconds": seconds, "compile_seconds": compile_s,
            "peak_bytes": _peak_bytes(compiled), "state_bytes": n * d * jnp.dtype(dtype).itemsize}


def run_suite(preset: str, dtype, models=("gm", "cw"), log=print) -> dict:
    cfg = PRESETS[preset]
    steps, repeats = cfg["steps"], cfg["repeats"]
    rows = []
    for d, n in cfg["sizes"]:
        copy_s = copy_pass_seconds(n, d, steps, dtype, repeats)
        state_bytes = n * d * jnp.dtype(dtype).itemsize
        floor = steps * copy_s
        for model_name in models:
            row = {"model": model_name, "d": d, "n": n, "steps": steps,
                   "dtype": jnp.dtype(dtype).name, "copy_pass_seconds": copy_s,
                   "copy_bandwidth_GBps": 2 * state_bytes / copy_s / 1e9,
                   "floor_seconds": floor}
            for method, key in (("scan", "fused"), ("diffrax", "diffrax")):
                r = measure_solve(model_name, d, n, steps, method, dtype, repeats)
                x = r.pop("x")
                row[key] = {**r, "achieved_GBps": 2 * state_bytes * steps / r["seconds"] / 1e9,
                            "vs_floor": r["seconds"] / floor}
                if key == "fused":
                    fused_x = x
                else:
                    row["diffrax_fused_max_abs_diff"] = float(jnp.max(jnp.abs(x - fused_x)))
            if n * d <= cfg["naive_max"]:
                r = measure_naive(model_name, d, n, steps, dtype, repeats)
                r.pop("x")
                row["naive"] = {**r, "vs_floor": r["seconds"] / floor}
            row["diffrax_vs_fused"] = row["diffrax"]["seconds"] / row["fused"]["seconds"]
            if "naive" in row:
                row["naive_vs_fused"] = row["naive"]["seconds"] / row["fused"]["seconds"]
            rows.append(row)
            log(_line(row))
    grads = []
    g = cfg["grad"]
    for steps_g in g["steps"]:
        for checkpoints in (None, steps_g):
            r = measure_gradient(g["d"], g["n"], steps_g, checkpoints, dtype)
            grads.append(r)
            log(f"gradient N={steps_g:4d} {r['checkpointing']:>15}: {r['seconds']:.3f} s, "
                f"XLA peak {r['peak_bytes'] / 2**20:.0f} MiB")
    return {"preset": preset, "machine": machine(), "environment": environment(),
            "solves": rows, "gradients": grads}


def machine() -> dict:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"model name\s*:\s*(.*)", f.read())
            cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"backend": jax.default_backend(), "device_kind": dev.device_kind,
            "device_count": jax.device_count(), "cpu": cpu, "cpu_count": os.cpu_count()}


def _line(row) -> str:
    naive = f", naive {row['naive']['seconds']:.3f} s" if "naive" in row else ""
    return (f"{row['model']} d={row['d']:>8} n={row['n']:>6}: fused "
            f"{row['fused']['seconds']:.3f} s "
            f"({row['fused']['vs_floor']:.2f}x floor {row['floor_seconds']:.3f} s), diffrax "
            f"{row['diffrax']['seconds']:.3f} s ({row['diffrax_vs_fused']:.2f}x fused){naive}")


def markdown(result: dict) -> str:
    m = result["machine"]
    device = m["device_kind"] if m["backend"] != "cpu" else f"{m['cpu']}, {m['cpu_count']} cores"
    dtype = result["solves"][0]["dtype"] if result["solves"] else "float32"
    lines = [
        f"Machine: {m['backend'].upper()}, {device}; JAX {result['environment']['jax']}, "
        f"{dtype}, N = {result['solves'][0]['steps']} Euler steps, VP-dilated, preset "
        f"`{result['preset']}`.",
        "",
        "| model | d × n | copy GB/s | floor (s) | fused (s) | fused / floor | diffrax (s) | "
        "diffrax / fused | naive (s) | naive / fused | compile fused / diffrax (s) | "
        "XLA peak fused / diffrax (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["solves"]:
        naive = (f"{r['naive']['seconds']:.3g} | {r['naive_vs_fused']:.1f}" if "naive" in r
                 else "– | –")
        f, x = r["fused"], r["diffrax"]
        lines.append(
            f"| {r['model']} | {r['d']:.0e} × {r['n']:.0e} | {r['copy_bandwidth_GBps']:.1f} | "
            f"{r['floor_seconds']:.3g} | {f['seconds']:.3g} | {f['vs_floor']:.2f} | "
            f"{x['seconds']:.3g} | {r['diffrax_vs_fused']:.2f} | {naive} | "
            f"{f['compile_seconds']:.2f} / {x['compile_seconds']:.2f} | "
            f"{_mib(f['peak_bytes'])} / {_mib(x['peak_bytes'])} |".replace("e+0", "e"))
    lines += ["", "One gradient step of schedule learning (GM, low-level loss, 20 pieces, fused "
              "sampler), time and XLA peak buffer size against N:", "",
              "| d × n | N | checkpointing | time (s) | XLA peak (MiB) | peak / state |",
              "|---|---|---|---|---|---|"]
    for g in result["gradients"]:
        lines.append(f"| {g['d']:.0e} × {g['n']} | {g['steps']} | {g['checkpointing']} | "
                     f"{g['seconds']:.3g} | {_mib(g['peak_bytes'])} | "
                     f"{g['peak_bytes'] / g['state_bytes']:.1f} |".replace("e+0", "e"))
    return "\n".join(lines)


def _mib(b) -> str:
    return "–" if b is None else f"{b / 2**20:.0f}"


def update_readme(table: str, backend: str, readme: Path = HERE / "README.md",
                  section: str = "perf") -> None:
    """Replace the text between the ``<section>:<backend>`` markers of benchmarks/README.md."""
    begin, end = f"<!-- {section}:{backend}:begin -->", f"<!-- {section}:{backend}:end -->"
    text = readme.read_text()
    if begin not in text:
        raise SystemExit(f"{readme} has no {begin} marker")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="sizes (default: gpu on a GPU, cpu otherwise)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--models", default="gm,cw")
    parser.add_argument("--out", default=None, help="JSON file (default "
                        "benchmarks/results/perf_<backend>.json)")
    parser.add_argument("--readme", action="store_true",
                        help="write the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    backend = jax.default_backend()
    preset = args.preset or ("gpu" if backend == "gpu" else "cpu")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    result = run_suite(preset, jnp.dtype(args.dtype), tuple(args.models.split(",")))
    out = Path(args.out or HERE / "results" / f"perf_{backend}.json")
    write_json(out, result)
    table = markdown(result)
    print(table)
    if args.readme:
        update_readme(table, backend)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
