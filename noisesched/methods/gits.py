"""GITS, geometry-inspired time scheduling (Chen, Zhou, Wang, Shen and Lyu, 2024, "On the
Trajectory Regularity of ODE-based Diffusion Sampling", ICML 2024): the N levels are the cheapest
N-point path through a fine grid of levels, where a path costs the sum of the errors of its
steps, each step taken by the student solver from the teacher's state and measured against the
teacher's state where it lands.

In the conventions of this package (``_teacher``): fine levels s_0 = σ_max > … > s_{M−1} = σ_min
(EDM's ρ = 7 law), teacher states T_m (shape (n, d)) at s_m from n prior states, and
dist_m(x, x') = mean over the batch and coordinates of ((x − x')/β(s_m))² (squared distance per
coordinate in y = x/β). One student step from level i to level j > i from the teacher's state,

    Φ_ij = (α_j/α_i) T_i + (β_j − α_j β_i/α_i) D_i,   D_i = η(s_i, T_i),

(σ-space Euler: y_j = D_i + (s_j/s_i)(y_i − D_i)) costs c(i → j) = dist_j(Φ_ij, T_j), and GITS
returns the levels s_{p_0}, …, s_{p_{N−1}} of the path 0 = p_0 < p_1 < … < p_{N−1} = M − 1 that
minimises Σ_k c(p_k → p_{k+1}), by dynamic programming over the number of steps:

    V_1(j) = c(0 → j),   V_k(j) = min_{i<j} V_{k−1}(i) + c(i → j),   the path of V_{N−1}(M − 1),

O(N M²) on a cost matrix that needs M denoiser calls (the sampler's last step, from σ_min to 0,
is the same for every path and is not counted).

``solver="dpmpp_2m"``: a DPM-Solver++(2M) step also uses the denoiser output of the student's
previous level, so its cost depends on the last two steps. Here the previous output is the
denoiser at the teacher's state there: with h the previous level,

    Φ_hij = Φ_ij + (β_j − α_j β_i/α_i) w_hij (D_i − D_h),   w_hij = log(s_i/s_j) / (2 log(s_h/s_i))

(w = 0 after a step from s_h = ∞; the first step is a σ-space Euler step, as in the sampler), the
cost c(h, i → j) = dist_j(Φ_hij, T_j) is expanded in the inner products of Φ_ij − T_j with
D_i − D_h (from the Gram matrices of the T's and D's: O(M² n d + M³) work), and the dynamic
programme runs over the last two levels of a path,

    W_1(0, j) = c(0 → j),   W_k(i, j) = min_{h<i} W_{k−1}(h, i) + c(h, i → j),

the path of min_i W_{N−1}(i, M − 1), O(N M³).

Details of the paper (and of the authors' published code) and the choices made here:

* Coarse from fine: as in the paper, the N-point schedule is a subsequence of the teacher's
  fine grid with both ends fixed, found by dynamic programming on a cost matrix estimated once
  from a few warm-up trajectories; no level off the fine grid can be chosen.
* The published setting: a teacher of iPNDM on 61 levels of EDM's ρ = 7 law, and in the cost one
  Euler step along the teacher's direction at T_i whatever the student solver (the students run
  the schedule with iPNDM and others). Here the fine grid is the same law with M = ``points``
  levels, the teacher DPM-Solver++(2M) with ``refine`` substeps per fine interval
  (``_teacher``), and the step in the cost is the student's own solver as described above.
* The published cost is an L2 norm per sample (averaged over the batch) or a "deviation" metric
  of the trajectory's shape, and the code weights the remaining path by a coefficient (1.15 by
  default): V_k(j) = min c(j → i) + coeff · V_{k−1}(i). Here the cost is the mean squared
  distance per coordinate in y = x/β and the coefficient is 1 (a plain sum of the step costs),
  the objective stated above. The "AFS" option (an extra free first step) is not used.
* Warm-up: n teacher trajectories from prior states of key ``seed`` (the paper: 256).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

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
def _first_steps(model: AbstractDenoiser, interp: InterpolantLike, sigma: Float[Array, " M"],
                 teacher: Float[Array, "M n d"], solver: str
                 ) -> tuple[Float[Array, "M M"], Float[Array, "M n d"]]:
    """(c[i, j] = dist_j(Φ_ij, T_j) for every pair, D_i = η(s_i, T_i)): the solver's first
    step (its memory at ``init``: a σ-space Euler step for both solvers) from every teacher
    state to every level."""
    step = NOISE_LEVEL_STEPS[solver]
    table = level_coefficients(interp, sigma)
    m = sigma.shape[0]
    denoised = jax.lax.map(lambda i: model.denoise(at(table, i), teacher[i]), jnp.arange(m))
    memory = spread(step.init(teacher[0]), m)
    return step_errors(step, table, denoised, teacher, memory, teacher), denoised


def _gram(a: Float[ArrayLike, "M n d"], b: Float[ArrayLike, "M n d"]) -> np.ndarray:
    """[i, h] = Σ a_i · b_h over (n, d), float64, shape (M, M)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a64.reshape(a64.shape[0], -1) @ b64.reshape(b64.shape[0], -1).T


def step_costs(model: AbstractDenoiser, interp: InterpolantLike, levels: np.ndarray,
               teacher: Float[Array, "M n d"], solver: str = "sigma_euler"
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """The costs of one student step from the teacher's states on the fine grid ``levels``
    (shape (M,)), float64: c[i, j] = c(i → j) (∞ unless i < j), and for ``dpmpp_2m`` also
    c3[h, i, j] = c(h, i → j) (∞ unless h < i < j); None for ``sigma_euler``.

    The correction of the two-step solver is linear in D_i − D_h, so c(h, i → j) is c(i → j)
    plus 2 g ⟨Φ_ij − T_j, D_i − D_h⟩/β_j + g² |D_i − D_h|² over n d, g = b_ij w_hij/β_j,
    b_ij = β_j − α_j β_i/α_i; Φ_ij − T_j = a_ij T_i + b_ij D_i − T_j with a_ij = α_j/α_i, so the
    inner products come from the Gram matrices of the T's and D's (float64)."""
    s = np.asarray(levels, np.float64)
    m = s.shape[0]
    cost, denoised = _first_steps(model, interp, jnp.asarray(s, teacher.dtype), teacher, solver)
    upper = np.triu(np.ones((m, m), bool), k=1)
    c = np.where(upper, np.asarray(cost, np.float64), np.inf)
    if solver != "dpmpp_2m":
        return c, None
    with jax.enable_x64(True):
        table = level_coefficients(interp, jnp.asarray(s, jnp.float64))
        alpha, beta = np.asarray(table.alpha), np.asarray(table.beta)
    safe = np.where(beta > 0, beta, 1.0)  # β = 0 only at s_0 = ∞, never a target
    te, ee = _gram(teacher, denoised), _gram(denoised, denoised)  # ⟨T_m, D_h⟩, ⟨D_m, D_h⟩
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(upper, alpha[None] / alpha[:, None], 0.0)  # [i, j]
        b = np.where(upper, beta[None] - a * beta[:, None], 0.0)
        log_s = np.log(s)
        h = log_s[:, None] - log_s[None]  # h[i, j] = log(s_i/s_j)
        prior = np.isfinite(h) & upper  # [h, i]: a two-step correction applies
        w = np.where(prior[:, :, None] & upper[None],
                     h[None] / (2.0 * np.where(prior, h, 1.0))[:, :, None], 0.0)  # [h, i, j]
    diag_te, diag_ee = np.diag(te), np.diag(ee)
    # ⟨X_i, D_i − D_h⟩ for X = T_i, D_i (as [h, i]) and ⟨T_j, D_i − D_h⟩ (as [h, i, j])
    t_i = diag_te[None] - te.T
    d_i = diag_ee[None] - ee.T
    t_j = te.T[None, :, :] - te.T[:, None, :]
    cross = (a[None] * t_i[:, :, None] + b[None] * d_i[:, :, None] - t_j) / safe[None, None]
    square = diag_ee[:, None] - 2.0 * ee + diag_ee[None]  # |D_i − D_h|², symmetric
    g = b[None] * w / safe[None, None]
    per = teacher.shape[-2] * teacher.shape[-1]
    c3 = c[None] + (2.0 * g * cross + g**2 * square[:, :, None]) / per
    valid = upper[:, :, None] & upper[None]
    return c, np.where(valid, np.maximum(c3, 0.0), np.inf)


def cheapest_path(c: np.ndarray, steps: int, c3: np.ndarray | None = None) -> np.ndarray:
    """The N-point path 0 = p_0 < … < p_{N−1} = M − 1 (N = ``steps``) of least total cost, shape
    (N,): Σ c[p_k, p_{k+1}], or with ``c3`` the first step c[0, p_1] plus
    Σ_{k≥1} c3[p_{k−1}, p_k, p_{k+1}]. Ties go to the lower index."""
    m = c.shape[0]
    moves = steps - 1
    if c3 is None:
        value = c[0].copy()  # V_1(j)
        back = []
        for _ in range(moves - 1):
            total = value[:, None] + c  # [i, j]
            back.append(np.argmin(total, axis=0))
            value = np.min(total, axis=0)
        path = [m - 1]
        for pred in reversed(back):
            path.append(int(pred[path[-1]]))
        path.append(0)
        return np.array(path[::-1])
    pair = np.full((m, m), np.inf)  # W_1(i, j): last step i → j
    pair[0] = c[0]
    back = []
    for _ in range(moves - 1):
        total = pair[:, :, None] + c3  # [h, i, j]
        back.append(np.argmin(total, axis=0))  # best h for (i, j)
        pair = np.min(total, axis=0)
    i, j = int(np.argmin(pair[:, m - 1])), m - 1
    path = [j, i]
    for pred in reversed(back):
        i, j = int(pred[i, j]), i
        path.append(i)
    return np.array(path[::-1])


def gits_levels(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
                sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, points: int = 64,
                n: int = 64, seed: int = 0, solver: str = "sigma_euler", refine: int = 4
                ) -> np.ndarray:
    """GITS's N levels σ_0 = σ_max > … > σ_{N−1} = σ_min (float64, shape (N,)), points of the
    fine grid ``teacher_levels(sigma_min, sigma_max, points)``."""
    check_range(steps, sigma_min, sigma_max)
    check_options("gits", model, interp, steps, points=points, n=n, seed=seed, solver=solver,
                  refine=refine)
    levels = teacher_levels(sigma_min, sigma_max, points)
    x0 = prior_states(interp, levels, n, seed)
    teacher = teacher_trajectory(model, interp, levels, x0, refine=refine)
    c, c3 = step_costs(model, interp, levels, teacher, solver)
    return levels[cheapest_path(c, steps, c3)]  # levels[0] = σ_max, ∞ included


def gits(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
         sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, points: int = 64,
         n: int = 64, seed: int = 0, solver: str = "sigma_euler", refine: int = 4
         ) -> KnotSchedule:
    """GITS (Chen et al. 2024): the N of ``points`` fine levels whose path, stepped by
    ``solver`` from the teacher's states, has the least summed one-step error (module
    docstring); ``n`` teacher trajectories from prior states of key ``seed``, ``refine`` teacher
    steps per fine interval."""
    return through_levels(interp, gits_levels(
        model, interp, steps, sigma_min=sigma_min, sigma_max=sigma_max, points=points, n=n,
        seed=seed, solver=solver, refine=refine))
