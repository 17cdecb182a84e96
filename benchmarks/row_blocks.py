"""Row-blocked solves against the per-step bandwidth floor and a compute-bound reference loop.

    python benchmarks/row_blocks.py [--smoke] [--readme]

For the two-mode mixture and Curie–Weiss (VP-dilated, linear shape, N = 100 Euler steps,
float32) at d × n = 10^3 × 10^4, 10^4 × 10^3, 10^5 × 256 and 10^6 × 32, in one process:

* ``floor``: N times one elementwise read-and-write pass over the (n, d) state (the per-step
  bandwidth floor of ``perf.py``);
* ``default``: ``ns.solve`` as a user calls it (``method="diffrax"``, Euler, ``span="auto"``,
  ``row_block="auto"``): the mixture in span form (the coefficients of its state in
  span{x_0, μ_1, μ_2} carried through the steps, the state written once), Curie–Weiss in blocks
  of rows that stay in cache through all N steps on a CPU;
* ``stepped``: the mixture's default with ``span=False``, its (n, d) state stepped as a model
  without a span form is (Curie–Weiss: its default);
* ``one pass``: ``method="scan"``, ``row_block=None`` (every step over the whole batch);
* ``before``: the path of the previous release: ``method="scan"``, one pass, the mixture's means
  as a dense (2, d) array read every step and its projections recomputed from each new state
  (``PreviousGaussianMixture``), Curie–Weiss with three tanh and one atanh per entry per step
  (``ThreeTanhCurieWeiss``);
* ``pallas``: ``method="pallas"`` (on a GPU only; the CPU runs it in Pallas' interpreter);
* ``reference``: a compute-bound loop written by hand with the least work per entry per step
  (mixture: one fused multiply-add and one sum; Curie–Weiss: one tanh, one atanh, one division
  and one sum), in the default's blocks (none for the mixture): what the default could reach
  with no overhead at all.

Also the transcendental functions each path evaluates per entry per step (counted in the jaxpr of
one step: the primitives applied to arrays of the state's shape). Writes
``results/row_blocks_<backend>.json``; ``--readme`` writes the table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import perf  # noqa: E402

import noisesched as ns  # noqa: E402
from noisesched._solve.row_blocks import (  # noqa: E402
    auto_row_block,
    by_row_blocks,
    keeps_elementwise,
)
from noisesched.experiments.io import environment, write_json  # noqa: E402
from noisesched.models.base import velocity_from_denoiser  # noqa: E402
from noisesched.models.means import DenseMeans  # noqa: E402

SIZES = {"full": [(1_000, 10_000), (10_000, 1_000), (100_000, 256), (1_000_000, 32)],
         "smoke": [(1_000, 64), (4_000, 16)]}


class PreviousGaussianMixture(ns.GaussianMixture):
    """The previous release's mixture step: the projections of each new state computed from
    the state (a reduction over its coordinates), not updated from the drift's."""

    def velocity_statistics(self, c, stats):
        return None


class ThreeTanhCurieWeiss(ns.CurieWeiss):
    """The previous release's Curie–Weiss drift: W+ tanh(atanh m + γx) + W− tanh(−atanh m + γx)
    with the phase logit's own tanh (three tanh and one atanh per entry per step)."""

    def statistics(self, c, x):
        m = self.m.astype(x.dtype)
        tanh_x = jnp.tanh((c.beta / c.alpha_sq) * x)
        return 2.0 * self.h * m + 2.0 * jnp.sum(jnp.arctanh(m * tanh_x), -1, keepdims=True)

    def statistics_for_blocks(self, c, x):
        return self.statistics(c, x)

    def velocity_from_statistics(self, c, x, stats):
        m = self.m.astype(x.dtype)
        gamma = c.beta / c.alpha_sq
        w_plus = jax.nn.sigmoid(stats)
        eta = (w_plus * jnp.tanh(jnp.arctanh(m) + gamma * x)
               + (1.0 - w_plus) * jnp.tanh(-jnp.arctanh(m) + gamma * x))
        return velocity_from_denoiser(c, x, eta)


def _model(name: str, d: int, variant: str):
    model, interp, sched = perf.setup(name, d)
    if variant == "before":
        model = (PreviousGaussianMixture(model.weights, DenseMeans(model.means), model.sigma)
                 if name == "gm" else ThreeTanhCurieWeiss(d, model.beta, model.h))
    return model, interp, sched


def measure(name: str, d: int, n: int, steps: int, variant: str, repeats: int, **kwargs
            ) -> dict:
    """Seconds per solve after compilation (median), with the model and schedule as arguments
    of the compiled function (as in a user's jitted code)."""
    model, interp, sched = _model(name, d, variant)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), n, dtype=jnp.float32)
    arrays, static = eqx.partition((model, sched), eqx.is_array)

    def fn(arrays, x0):
        model, sched = eqx.combine(arrays, static)
        return ns.solve(model, interp, sched, x0, steps=steps, **kwargs).x

    compiled, compile_s = perf._compile(fn, arrays, x0)
    x = jax.block_until_ready(compiled(arrays, x0))
    block = kwargs.get("row_block", "auto")
    # what the solve carries: the block statistics in blocks and in the kernel
    in_blocks = kwargs.get("method") == "pallas" or (
        auto_row_block(n, d, x0.dtype, jax.default_backend()) if block == "auto"
        else block) is not None
    return {"seconds": perf._median_seconds(lambda: compiled(arrays, x0), repeats),
            "compile_seconds": compile_s,
            "transcendentals_per_entry_step": transcendentals_per_entry(model, interp, sched,
                                                                        in_blocks), "x": x}


TRANSCENDENTAL = {"tanh", "atanh", "exp", "log", "log1p", "expm1", "logistic", "sin", "cos"}


def transcendentals_per_entry(model, interp, sched, in_blocks: bool) -> dict[str, int]:
    """The transcendental primitives of one fused Euler step (the drift from the carried
    statistics, then the statistics of the new state) applied to arrays of the state's shape,
    by name."""
    x = jnp.ones((3, model.d), jnp.float32)
    c = interp.coefficients(sched, 0.3)
    stats = model.statistics_for_blocks if in_blocks else model.statistics

    def step(x, carried):
        x = x + 0.01 * model.velocity_from_statistics(c, x, carried)
        return x, stats(c, x)

    counts: dict[str, int] = {}
    for eqn in jax.make_jaxpr(step)(x, stats(c, x)).jaxpr.eqns:
        name = eqn.primitive.name
        if name in TRANSCENDENTAL and eqn.outvars[0].aval.shape == x.shape:
            counts[name] = counts.get(name, 0) + 1
    return counts


def reference_loop(name: str, d: int, n: int, steps: int, block: int | None,
                   repeats: int) -> float:
    """The hand-written loop with the least work per entry per step, in blocks of ``block``
    rows (None: one pass)."""
    model, interp, sched = perf.setup(name, d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), n, dtype=jnp.float32)
    ts = jnp.linspace(0.0, 1.0, steps + 1)
    table = jnp.stack(list(jax.vmap(lambda t: interp.coefficients(sched, t))(ts[:-1])), -1)
    dt = 1.0 / steps
    m = float(model.m) if name == "cw" else 1.0

    def rows(x):
        def gm_step(i, carry):
            x, s = carry
            alpha, beta, dbeta, alpha_sq, alpha_dalpha = (table[i, j] for j in range(5))
            var = alpha_sq + 0.25 * beta**2
            mean = jnp.tanh((beta / var) * s + 0.5 * math.log(4))  # 2w − 1, one per row
            a = 1.0 + dt * (alpha_dalpha + 0.25 * beta * dbeta) / var
            b = dt * (dbeta * alpha_sq - alpha_dalpha * beta) / var
            x = a * x + b * mean
            return x, jnp.sum(x, -1, keepdims=True)

        def cw_step(i, carry):
            x, tanh_x, logit = carry
            alpha, beta, dbeta, alpha_sq, alpha_dalpha = (table[i, j] for j in range(5))
            phase = jnp.tanh(0.5 * logit)
            eta = (tanh_x * (1 - m * m) + phase * m * (1 - tanh_x * tanh_x)) / (
                1 - m * m * tanh_x * tanh_x)
            x = x + dt * (alpha_dalpha * (x - beta * eta) / alpha_sq + dbeta * eta)
            nxt = jnp.minimum(i + 1, steps - 1)
            tanh_x = jnp.tanh((table[nxt, 1] / table[nxt, 3]) * x)
            return x, tanh_x, 2 * jnp.sum(jnp.arctanh(m * tanh_x), -1, keepdims=True)

        if name == "gm":
            return jax.lax.fori_loop(0, steps, gm_step, (x, jnp.sum(x, -1, keepdims=True)))[0]
        tanh_x = jnp.tanh((table[0, 1] / table[0, 3]) * x)
        logit = 2 * jnp.sum(jnp.arctanh(m * tanh_x), -1, keepdims=True)
        return jax.lax.fori_loop(0, steps - 1, cw_step, (x, tanh_x, logit))[0]

    def solve(x):
        return rows(x) if block is None else by_row_blocks(rows, x, block)

    compiled, _ = perf._compile(solve, x0)
    jax.block_until_ready(compiled(x0))
    return perf._median_seconds(lambda: compiled(x0), repeats)


def run(sizes, steps: int, repeats: int, log=print) -> dict:
    backend = jax.default_backend()
    rows = []
    for d, n in sizes:
        floor = steps * perf.copy_pass_seconds(n, d, steps, jnp.float32, repeats)
        for name in ("gm", "cw"):
            model, _, _ = perf.setup(name, d)
            # the default's blocks: only for a model that keeps elementwise values in them
            block = (auto_row_block(n, d, jnp.float32, backend)
                     if keeps_elementwise(model, jnp.ones((1, d), jnp.float32)) else None)
            default = measure(name, d, n, steps, "now", repeats, solver="euler")
            stepped = (measure(name, d, n, steps, "now", repeats, solver="euler", span=False)
                       if name == "gm" else None)
            one_pass = measure(name, d, n, steps, "now", repeats, method="scan", row_block=None)
            before = measure(name, d, n, steps, "before", repeats, method="scan",
                             row_block=None)
            row = {"model": name, "d": d, "n": n, "steps": steps, "row_block": block,
                   "floor_seconds": floor, "default": default, "one_pass": one_pass,
                   "before": before,
                   "reference_seconds": reference_loop(name, d, n, steps, block, repeats)}
            if stepped is not None:
                row["stepped"] = stepped
            if backend == "gpu":
                row["pallas"] = measure(name, d, n, steps, "now", repeats, method="pallas")
            for key in ("default", "stepped", "one_pass", "before", "pallas"):
                if key in row:
                    x = row[key].pop("x")
                    if key == "default":
                        reference_x = x
                    else:
                        row[key]["max_abs_diff_to_default"] = float(
                            jnp.max(jnp.abs(x - reference_x)))
            rows.append(row)
            log(_line(row))
    return {"machine": perf.machine(), "environment": environment(), "rows": rows}


def _line(r) -> str:
    return (f"{r['model']} {r['d']:.0e} x {r['n']}: floor {r['floor_seconds']:.3f}, default "
            f"{r['default']['seconds']:.3f} ({r['default']['seconds'] / r['floor_seconds']:.2f}x"
            f" floor), {_stepped(r)}, one pass "
            f"{r['one_pass']['seconds']:.3f}, before "
            f"{r['before']['seconds']:.3f} ({r['before']['seconds'] / r['default']['seconds']:.1f}"
            f"x default), reference {r['reference_seconds']:.3f}")


def _stepped(r) -> str:
    if "stepped" not in r:
        return "no span form"
    return (f"stepped {r['stepped']['seconds']:.3f} "
            f"({r['stepped']['seconds'] / r['floor_seconds']:.2f}x floor)")


def _stepped_cells(r) -> str:
    if "stepped" not in r:
        return "= default | –"
    return (f"{r['stepped']['seconds']:.3g} | "
            f"{r['stepped']['seconds'] / r['floor_seconds']:.2f}")


def markdown(result: dict) -> str:
    m = result["machine"]
    device = m["device_kind"] if m["backend"] != "cpu" else f"{m['cpu']}, {m['cpu_count']} cores"
    gpu = any("pallas" in r for r in result["rows"])
    lines = [f"Machine: {m['backend'].upper()}, {device}; JAX {result['environment']['jax']}, "
             f"float32, N = {result['rows'][0]['steps']} Euler steps, VP-dilated, one process.",
             "",
             "| model | d × n | rows per block | floor (s) | default (s) | default / floor | "
             "stepped (s) | stepped / floor | one pass (s) | before (s) | before / default | "
             "reference (s) | default / reference | "
             "transcendentals per entry per step (default; before) |"
             + (" pallas (s) | pallas / floor |" if gpu else ""),
             "|" + "---|" * (14 + 2 * gpu)]
    for r in result["rows"]:
        f, default = r["floor_seconds"], r["default"]
        line = (f"| {r['model']} | {r['d']:.0e} × {r['n']} | {r['row_block'] or 'all'} | "
                f"{f:.3g} | {default['seconds']:.3g} | {default['seconds'] / f:.2f} | "
                f"{_stepped_cells(r)} | {r['one_pass']['seconds']:.3g} | "
                f"{r['before']['seconds']:.3g} | "
                f"{r['before']['seconds'] / default['seconds']:.1f} | "
                f"{r['reference_seconds']:.3g} | "
                f"{default['seconds'] / r['reference_seconds']:.2f} | "
                f"{_counts(default)}; {_counts(r['before'])} |")
        if gpu:
            line += f" {r['pallas']['seconds']:.3g} | {r['pallas']['seconds'] / f:.2f} |"
        lines.append(line.replace("e+0", "e"))
    return "\n".join(lines)


def _counts(measured: dict) -> str:
    return " + ".join(f"{v} {k}" for k, v in sorted(measured["transcendentals_per_entry_step"]
                                                     .items())) or "none"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)
    result = run(SIZES["smoke" if args.smoke else "full"], 10 if args.smoke else 100,
                 args.repeats)
    backend = jax.default_backend()
    out = HERE / "results" / f"row_blocks_{'smoke_' if args.smoke else ''}{backend}.json"
    write_json(out, result)
    table = markdown(result)
    print(table)
    if args.readme:
        perf.update_readme(table, backend, section="rowblocks")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
