"""Is a Monte Carlo mode weight off because of the solver or because of the prior draw?

    python benchmarks/prior_check.py [--d 100000] [--n 5000]

Solves GM VP-dilated (N = 100 Euler) in full dimension in float32 and, on the same initial
overlaps, the exact two-mode reduction in float64; prints how many samples the two put in
different modes, and the fraction of initial overlaps above the exact threshold.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import noisesched as ns
from noisesched import theory


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    d = args.d
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", d)
    sched = ns.schedules.vp_dilated(d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), args.n)
    x = ns.solve(model, interp, sched, x0, steps=100).x
    mu = np.asarray(model.means[0], np.float64)
    m0 = np.asarray(x0, np.float64) @ mu / (mu @ mu)
    full = np.asarray(x, np.float64) @ mu > 0
    with jax.enable_x64(True):
        red = theory.TwoModeReduction.two_modes(d)
        m_n, _ = theory.reduced_solve(red, interp, sched, jnp.asarray(m0), 100)
        exact = theory.gm_oracle(red, interp, sched, 100)
    reduced = np.asarray(m_n) > 0
    above = np.mean(m0 * np.sqrt(mu @ mu) > float(exact["threshold"]))
    print(f"d = {d}, n = {args.n}: full-d fraction {full.mean():.4f}, reduced {reduced.mean():.4f},"
          f" disagreements {int(np.sum(full != reduced))}; initial overlaps above the exact "
          f"threshold {above:.4f}; exact mode weight {float(exact['mode_weight']):.4f}")


if __name__ == "__main__":
    main()
