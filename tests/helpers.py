"""Independent references used by several tests."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def velocity_orthogonality(model, interp, sched, t, key, n, test_functions):
    """Monte Carlo check that b(t, ·) = E[α̇ z + β̇ x1 | x_t]: for each test function f,
    E[(α̇ z + β̇ x1 − b(t, x_t)) · f(x_t)] = 0. Returns (means, standard errors)."""
    kz, kx = jax.random.split(key)
    x1 = model.sample(kx, n)
    z = jax.random.normal(kz, x1.shape, dtype=x1.dtype)
    c = interp.coefficients(sched, t)
    xt = c.alpha * z + c.beta * x1
    target = c.dalpha * z + c.dbeta * x1
    resid = target - model.drift(interp, sched, t, xt)
    means, errs = [], []
    for f in test_functions:
        v = jnp.sum(resid * f(xt), axis=-1)
        means.append(float(jnp.mean(v)))
        errs.append(float(jnp.std(v) / np.sqrt(n)))
    return np.array(means), np.array(errs)


TEST_FUNCTIONS = [
    lambda x: jnp.ones_like(x),
    lambda x: x,
    lambda x: jnp.tanh(x),
    lambda x: jnp.tanh(jnp.sum(x, axis=-1, keepdims=True)) * jnp.ones_like(x),
    lambda x: x**2,
]


def all_spin_configurations(d):
    return jnp.array(list(itertools.product([-1.0, 1.0], repeat=d)))


def two_phase_log_prob(configs, m, w_plus):
    """log ρ1(s) of the two-phase Curie–Weiss law, by direct products (fine for small d)."""
    plus = jnp.prod((1 + m * configs) / 2, axis=-1)
    minus = jnp.prod((1 - m * configs) / 2, axis=-1)
    return jnp.log(w_plus * plus + (1 - w_plus) * minus)


def result_files(folder):
    """The sorted names of the files of a published result (``noisesched._output``), without
    the folder's record of them."""
    from noisesched._output import MANIFEST

    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
