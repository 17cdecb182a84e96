"""The default job: the VP/VE × constant/dilated dichotomy on the two-mode Gaussian mixture.

With N Euler steps much fewer than √d, VP-constant loses the mode weight (high-level feature) and
VE-constant the within-mode variance (low-level feature); the dilated schedules keep both.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from .. import metrics
from .._output import check_output_folder, staged
from .._validation import check_int, check_real
from ..interpolants import Interpolant
from ..models import GaussianMixture
from ..models.gaussian_mixture import LARGEST_SCALE
from ..sampling import sample
from ..schedules import make
from ..streaming import check_memory
from .io import environment, save_figure, write_json

CASES = (("vp", "constant"), ("vp", "vp_dilated"), ("ve", "constant"), ("ve", "ve_dilated"))


@dataclass(frozen=True)
class DemoConfig:
    d: int = 10_000
    n: int = 4096
    steps: int = 100
    p: float = 0.8
    m: float = 1.0
    sigma: float = 0.5
    k: float = 3.0
    seed: int = 0

    def validate(self) -> None:
        check_int("d", self.d, lo=2)
        check_int("n", self.n, lo=1)
        check_int("steps", self.steps, lo=1)
        check_real("p", self.p, 0.0, 1.0)
        check_real("m", self.m, 0.0, LARGEST_SCALE, hi_open=False)
        check_real("sigma", self.sigma, 0.0, LARGEST_SCALE, hi_open=False)
        check_real("k", self.k, 0.0, self.d**0.5)
        check_int("seed", self.seed, lo=0)


def run_demo(config: DemoConfig, out: str | Path, *, log=print) -> dict:
    """Run the four cases, print a table, write ``out/results.json`` and ``out/demo.png``."""
    config.validate()
    # the four solves run one after another, each on the whole batch on the default device
    check_memory(config.d, config.n, jnp.result_type(float), jax.devices()[:1],
                 steps=config.steps, rows_name="--n", can_split_coordinates=False)
    out = check_output_folder(out)
    model = GaussianMixture.two_modes(d=config.d, p=config.p, m=config.m, sigma=config.sigma)
    setups = []
    for kind, name in CASES:  # build everything first: bad parameters fail before any solve
        interp = Interpolant(kind=kind, shape="linear", d=config.d)
        model.check_resolution(interp, jnp.result_type(float))
        setups.append((kind, name, interp, make(name, interp, k=config.k)))

    key = jax.random.PRNGKey(config.seed)
    rows = []
    header = (f"{'kind':<4} {'schedule':<11} {'mode weight':>11} {'target':>7} "
              f"{'within-var':>10} {'target':>7} {'KS':>6} {'time (s)':>8}")
    log(f"GM two modes: d={config.d}, n={config.n}, N={config.steps} Euler steps, "
        f"p={config.p}, m={config.m}, sigma={config.sigma}, k={config.k}")
    log(header)
    log("-" * len(header))
    for kind, name, interp, sched in setups:
        start = time.perf_counter()
        x = sample(model, interp, sched, key, config.n, steps=config.steps, solver="euler")
        x.block_until_ready()
        elapsed = time.perf_counter() - start
        row = {"kind": kind, "schedule": name, **metrics.summary(model, x), "seconds": elapsed}
        rows.append(row)
        log(f"{kind:<4} {name:<11} {row['mode_weight']:>11.4f} {row['mode_weight_target']:>7.3f} "
            f"{row['within_mode_var']:>10.4f} {row['within_mode_var_target']:>7.3f} "
            f"{row['coordinate_ks']:>6.3f} {elapsed:>8.2f}")

    result = {"command": "demo", "config": asdict(config), "results": rows,
              "environment": environment()}
    with staged(out) as stage:
        save_figure(stage / "demo.png", _figure(config, setups, rows))
        write_json(stage / "results.json", result)
    log(f"wrote {out / 'results.json'} and {out / 'demo.png'}")
    return result


def _figure(config: DemoConfig, setups, rows):
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    t = jnp.linspace(0.0, 1.0, 401)
    plotted = set()
    for _, name, _, sched in setups:
        if name not in plotted:  # τ(t) does not depend on the kind
            plotted.add(name)
            axes[0].plot(t, jax.vmap(sched)(t), label=name)
    axes[0].set(xlabel="t", ylabel="τ(t) = β(t)", title="schedules")
    axes[0].legend(fontsize=8)
    labels = [f"{r['kind']}\n{r['schedule']}" for r in rows]
    axes[1].bar(labels, [r["mode_weight"] for r in rows], color="tab:blue")
    axes[1].axhline(config.p, color="k", ls="--", label=f"target p = {config.p}")
    axes[1].set(ylim=(0.5, 1.0), title="high-level: mode weight")
    axes[1].legend(fontsize=8)
    axes[2].bar(labels, [r["within_mode_var"] for r in rows], color="tab:orange")
    axes[2].axhline(config.sigma**2, color="k", ls="--", label=f"target σ² = {config.sigma**2:g}")
    axes[2].set(ylim=(0.0, 1.3 * config.sigma**2), title="low-level: within-mode variance")
    axes[2].legend(fontsize=8)
    for ax in axes[1:]:
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Gaussian mixture, d = {config.d}, N = {config.steps} Euler steps, "
                 f"n = {config.n}")
    fig.tight_layout()
    return fig
