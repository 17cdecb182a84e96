"""OSS, optimal stepsize distillation (Pei, Hu and Gu, 2025, "Optimal Stepsize for Diffusion
Sampling", arXiv 2503.21774): the N levels are read off a dynamic programme on a fine grid of
levels in which the student's own state is propagated, and a path is judged by the distance of
the state it reaches to the teacher's state there.

In the conventions of this package (``_teacher``): fine levels s_0 = σ_max > … > s_{M−1} = σ_min
(EDM's ρ = 7 law), prior states x_0 (shape (n, d)) at s_0, teacher states T_m at s_m, and
dist_m(x, x') = mean over the batch and coordinates of ((x − x')/β(s_m))². Write
Step(x, μ; i → j) for one step of the student solver (``solver``) from state x and solver memory
μ at s_i to s_j (σ-space Euler: y_j = D + (s_j/s_i)(y_i − D), D = η(s_i, x); DPM-Solver++(2M):
its memory is the previous denoiser output and log-step). For each number of steps k and fine
point j the programme keeps the best predecessor P_k(j), the student's state X_k(j) reached at
s_j by that k-step path and its memory μ_k(j), and the cost E_k(j):

    X_0(0) = x_0,  μ_0(0) = the solver's initial memory,
    (X, μ)_{k,i→j} = Step(X_{k−1}(i), μ_{k−1}(i); i → j),
    P_k(j) = argmin_{i<j} dist_j(X_{k,i→j}, T_j),  E_k(j) = its minimum,
    (X_k(j), μ_k(j)) = (X, μ)_{k, P_k(j)→j},

and returns the levels of the path traced back from (N − 1, M − 1): p_{N−1} = M − 1,
p_{k−1} = P_k(p_k). The path's final error E_{N−1}(M − 1) is the distance of the student's own
sample at σ_min (before the sampler's last step to 0, the same for every path) to the teacher's.

Assumptions. The recursion keeps one state per (k, j): a (k+1)-step path is extended only from
the k-step path that is best *at its own endpoint*, which is the optimal substructure the paper
assumes. It is exact for paths of at most two steps inside the grid (N = 3 levels: the final
error is minimised over every interior point, the first step from x_0 being the same for all);
for longer paths it can miss the path of least final error, whose prefix need not be closest to
the teacher where it ends. Work O(N M² n d) and M denoiser calls per step count.

Details of the paper (and of the authors' published code) and the choices made here:

* The published teacher is 200 Euler steps uniform in flow-matching time and the fine grid is
  the teacher's own grid; here the fine grid is EDM's ρ = 7 law with M = ``points`` levels and
  the teacher DPM-Solver++(2M) with ``refine`` substeps per fine interval (``_teacher``), so that
  a student's step between neighbouring fine points is not exact by construction.
* The published code runs the programme for each sample on its own (cost: the mean squared
  difference over the coordinates) and gives one schedule per sample. Here one programme runs on
  the batch of n samples together, its cost the mean squared difference over the batch and the
  coordinates, giving one schedule for the batch.
* In that code the table of step count k starts from the entries of k − 1 (a path with fewer
  steps may stand in for one of k); here every entry is a path of exactly k steps.
* The paper's per-step amplitude calibration of the states is not used.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._solve.noise_level import NOISE_LEVEL_STEPS
from ..models.base import AbstractDenoiser
from ..schedules import InterpolantLike, KnotSchedule
from ._levels import SIGMA_MAX, SIGMA_MIN, check_range, level_coefficients, through_levels
from ._teacher import (
    at,
    check_options,
    prior_states,
    spread,
    step_errors,
    teacher_levels,
    teacher_trajectory,
)


@eqx.filter_jit
def _search(model: AbstractDenoiser, interp: InterpolantLike, sigma: Float[Array, " M"],
            x0: Float[Array, "n d"], teacher: Float[Array, "M n d"], solver: str, moves: int
            ) -> tuple[Int[Array, "K M"], Float[Array, "K M"]]:
    step = NOISE_LEVEL_STEPS[solver]
    table = level_coefficients(interp, sigma)
    m = sigma.shape[0]
    index = jnp.arange(m)
    start = (spread(x0, m), spread(step.init(x0), m), index == 0)

    def stage(carry, _):
        states, memory, reached = carry
        denoised = jax.lax.map(lambda i: model.denoise(at(table, i), states[i]), index)
        cost = step_errors(step, table, denoised, states, memory, teacher)  # [i, j]
        cost = jnp.where(reached[:, None] & (index[:, None] < index[None]), cost, jnp.inf)
        pred = jnp.argmin(cost, axis=0)  # ties to the lower index
        error = cost[pred, index]

        def build(j, i):  # the state and memory at j of the best path there
            return step(lambda c, x: denoised[i], at(table, i), at(table, j), states[i],
                        jax.tree.map(lambda a: a[i], memory))

        states, memory = jax.vmap(build)(index, pred)
        reached = jnp.isfinite(error)
        return (states, memory, reached), (jnp.where(reached, pred, -1), error)

    _, (preds, errors) = jax.lax.scan(stage, start, None, length=moves)
    return preds, errors


def oss_search(model: AbstractDenoiser, interp: InterpolantLike, levels: np.ndarray,
               x0: Float[Array, "n d"], teacher: Float[Array, "M n d"], steps: int,
               solver: str = "sigma_euler") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The programme on the fine grid ``levels`` (shape (M,)) from the prior states ``x0`` at
    ``levels[0]`` against the teacher's states: (path, P, E) with the N-point path (N =
    ``steps``, indices into the grid, shape (N,)), the predecessors P[k − 1, j] = P_k(j) (−1
    where no k-step path reaches j) and the errors E[k − 1, j] = E_k(j) (∞ there), shapes
    (N − 1, M)."""
    s = np.asarray(levels, np.float64)
    found = _search(model, interp, jnp.asarray(s, teacher.dtype), x0, teacher, solver,
                    steps - 1)
    preds, errors = np.asarray(found[0]), np.asarray(found[1], np.float64)
    path = [s.shape[0] - 1]
    for k in range(steps - 2, -1, -1):
        path.append(int(preds[k, path[-1]]))
    return np.array(path[::-1]), preds, errors


def oss_levels(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
               sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, points: int = 64,
               n: int = 64, seed: int = 0, solver: str = "sigma_euler", refine: int = 4
               ) -> np.ndarray:
    """OSS's N levels σ_0 = σ_max > … > σ_{N−1} = σ_min (float64, shape (N,)), points of the fine
    grid ``teacher_levels(sigma_min, sigma_max, points)``."""
    check_range(steps, sigma_min, sigma_max)
    check_options("oss", model, interp, steps, points=points, n=n, seed=seed, solver=solver,
                  refine=refine)
    levels = teacher_levels(sigma_min, sigma_max, points)
    x0 = prior_states(interp, levels, n, seed)
    teacher = teacher_trajectory(model, interp, levels, x0, refine=refine)
    path, _, _ = oss_search(model, interp, levels, x0, teacher, steps, solver)
    return levels[path]  # levels[0] = σ_max, ∞ included


def oss(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
        sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, points: int = 64,
        n: int = 64, seed: int = 0, solver: str = "sigma_euler", refine: int = 4
        ) -> KnotSchedule:
    """OSS (Pei et al. 2025): the N of ``points`` fine levels read off the dynamic programme
    that propagates the student's own state (``solver``) and keeps, per step count and fine
    point, the path closest to the teacher there (module docstring); ``n`` teacher trajectories
    from prior states of key ``seed``, ``refine`` teacher steps per fine interval."""
    return through_levels(interp, oss_levels(
        model, interp, steps, sigma_min=sigma_min, sigma_max=sigma_max, points=points, n=n,
        seed=seed, solver=solver, refine=refine))
