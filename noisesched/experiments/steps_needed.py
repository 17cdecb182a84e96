"""The fewest steps N* that get both features right, measured by full solves (Monte Carlo).

For a law without an exact reduction of the sampler (Curie–Weiss), N* at one d is found from
solves of the full d-dimensional sampler, run through ``noisesched.sweep``: each rung of a ladder
of step counts N = 1, 2, 4, … is one sweep over ``seeds`` (one compiled call, vmapped over the
seeds), and the study's Parquet parts make an interrupted search resume rung by rung.

**Paired errors.** Every solve of a seed starts from the same prior draws (row i from
``fold_in(PRNGKey(seed), i)``). The exact probability-flow map from t = 0 to t = 1 does not
depend on the schedule (a schedule only reparametrises time), so a solve of the same prior
draws with many steps of the interpolant's dilated schedule (``reference_steps``) is the
converged sampler on the same draws, an unbiased sample of the data law (solved with a
second-order solver, Heun by default, so that its own discretisation error is negligible). The
discretisation error of an N-step solve is measured against it, seed by seed:

* high level (the first ``"high"`` feature of the law with a target: the mode weight, the
  positive-phase fraction): e_s = f_N,s − f_ref,s;
* low level (the first ``"low"`` feature with a target: the within-mode variance, mean x²):
  e_s = (f_N,s − f_ref,s) / target, a relative error.

The error is the mean of e_s over the seeds, with its standard error (sample standard deviation
over the seeds / √seeds): pairing removes the Monte Carlo noise of the target itself, so the
error bars are those of the discretisation error alone. (A low-level target of 0 gives the
absolute error instead.) A solve that fails (nan or inf) makes its rung fail. The reference's
own deviation from the exact targets (over all seeds' samples, with its binomial or sample
standard error) is reported beside it, as a check that it is converged.

**N\\*.** With r_j = max(|e_high| / tol_weight, |e_low| / tol_var) at rung N_j, N* is where r
falls to 1 for good: the first rung from which every larger rung has r ≤ 1, interpolated in
log N (and log r) from the rung before it; the first rung itself when it already passes (N* is
then at most that). The search stops at the first rung where r + 2 s.e. ≤ 1 also holds (the
pessimistic bound), or at ``max_steps`` (N* is then None). The same rule with |e| ∓ 2 s.e. in
place of |e| gives the interval (N*_low, N*_high) of the estimate: with 8 seeds, ±2 s.e. is a
91 % Student-t interval; with fewer seeds it covers less (2.0 against t = 4.3 at 3 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.base import Feature, binomial_standard_error, mean_standard_error
from .config import from_mapping

__all__ = ["steps_needed_monte_carlo", "crossing", "paired_errors", "DILATED"]

#: The converged reference of each interpolant kind: its dilated schedule.
DILATED = {"vp": "vp_dilated", "ve": "ve_dilated"}
#: Bounds of the interval of N*: the error ∓ this many standard errors.
SPREAD = 2.0


def _features(base: Mapping[str, Any]) -> tuple[Feature, Feature]:
    """(high, low): the first feature of each level with a target, of the base config's law."""
    law = from_mapping(base).build()[0].data_law()
    found: dict[str, Feature] = {}
    for feature in law.features:
        if feature.target is not None:
            found.setdefault(feature.level, feature)
    if set(found) != {"high", "low"}:
        raise ValueError(f"{type(law).__name__} needs a high- and a low-level feature with a "
                         "target for a steps-needed study")
    return found["high"], found["low"]


def paired_errors(rows: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]],
                  high: Feature, low: Feature) -> dict[str, float | None]:
    """Errors of one rung against the reference, seed by seed (rows of both in seed order):
    the mean over seeds of f_N − f_ref (high) and (f_N − f_ref) / target (low; the absolute
    difference where the target is 0), with the standard error of each mean (None with one
    seed); infinite errors when a solve of the rung failed."""
    if any(row.get("error") for row in rows):
        return {"high": math.inf, "high_se": None, "low": math.inf, "low_se": None}

    def errors(feature: Feature, relative: bool) -> tuple[float, float | None]:
        assert feature.target is not None
        e = np.array([(row[feature.key] - ref[feature.key])
                      / (abs(ref[feature.target]) if relative and ref[feature.target] else 1.0)
                      for row, ref in zip(rows, reference, strict=True)], np.float64)
        return float(np.mean(e)), (mean_standard_error(e) if e.size > 1 else None)

    (e_high, se_high), (e_low, se_low) = errors(high, False), errors(low, True)
    return {"high": e_high, "high_se": se_high, "low": e_low, "low_se": se_low}


def _ratio(rung: Mapping[str, Any], tol_weight: float, tol_var: float, shift: float) -> float:
    """max over the two features of (|e| + shift · s.e.) / tolerance (≥ 0)."""
    def one(error: float, se: float | None, tol: float) -> float:
        return max(abs(error) + shift * (se or 0.0), 0.0) / tol
    return max(one(rung["high"], rung["high_se"], tol_weight),
               one(rung["low"], rung["low_se"], tol_var))


def crossing(steps: Sequence[int], ratios: Sequence[float]) -> float | None:
    """Where r falls to 1 for good on a ladder (``steps`` increasing): the first rung from which
    every later r ≤ 1, interpolated log-linearly in (log N, log r) from the rung before it; the
    first rung when every r ≤ 1; None when the last r > 1."""
    if not steps or ratios[-1] > 1:
        return None
    j = len(ratios) - 1
    while j > 0 and ratios[j - 1] <= 1:
        j -= 1
    if j == 0:
        return float(steps[0])
    if not math.isfinite(ratios[j - 1]):  # the rung before failed: nothing to interpolate
        return float(steps[j])
    tiny = 1e-12  # r = 0 (an error of exactly zero): the crossing is at that rung
    lo, hi = math.log(max(ratios[j - 1], tiny)), math.log(max(ratios[j], tiny))
    fraction = lo / (lo - hi)
    return float(math.exp(math.log(steps[j - 1])
                          + fraction * (math.log(steps[j]) - math.log(steps[j - 1]))))


def _reference_check(rows: Sequence[Mapping[str, Any]], high: Feature, low: Feature,
                     n: int) -> dict[str, float]:
    """The reference's deviation from the exact targets over all seeds' samples, each with its
    standard error (binomial for the high-level fraction; from the seeds for the low level)."""
    assert high.target is not None and low.target is not None
    f_high = float(np.mean([row[high.key] for row in rows]))
    target_high = float(rows[0][high.target])
    f_low = np.array([row[low.key] / row[low.target] - 1.0 if row[low.target]
                      else row[low.key] for row in rows])
    # the binomial error of the target's own weight: how far an unbiased sampler strays
    return {"high": f_high - target_high,
            "high_se": binomial_standard_error(target_high, n * len(rows)),
            "low": float(np.mean(f_low)), "low_se": mean_standard_error(f_low)}


def steps_needed_monte_carlo(
    base: Mapping[str, Any],
    *,
    seeds: int,
    reference_steps: int,
    reference_solver: str = "heun",
    reference_k: float = 3.0,
    tol_weight: float,
    tol_var: float,
    max_steps: int,
    store: str | Path | None,
    run_sweep: Callable[..., Any],
) -> dict[str, Any]:
    """N* of one (model, interpolant, schedule, d) from full solves (see the module's
    docstring).

    Args:
        base: the run config of the case, as sections (``solver.steps`` is set per rung).
        seeds: independent prior draws per rung (``sample.seed`` = 0 … seeds − 1), each of
            ``sample.n`` samples.
        reference_steps: steps of the converged reference (the dilated schedule of the kind).
        reference_solver: its solver (a second-order one: Euler's 1/N error would stay in
            every paired error).
        reference_k: the dilation k of its schedule.
        tol_weight, tol_var: tolerances on the high-level error and the relative low-level one.
        max_steps: the largest rung.
        store: the folder of the solves' Parquet parts (resumed), or None.
        run_sweep: ``noisesched.sweep`` (passed in so that callers set its progress and log).

    Returns:
        ``steps`` (N*, None if above ``max_steps``), ``steps_low``, ``steps_high`` (the interval
        from the errors ∓ 2 s.e.), ``rungs`` (steps, errors and standard errors of each rung),
        ``reference`` (its steps and its deviation from the exact targets).
    """
    high, low = _features(base)
    grid = {"seeds": list(range(seeds))}

    def solve(steps: int, schedule: Mapping[str, Any] = base["schedule"],
              solver: str = base["solver"]["name"]) -> list[dict[str, Any]]:
        config = {**base, "schedule": dict(schedule),
                  "solver": {**base["solver"], "name": solver, "steps": steps}}
        return run_sweep(config, grid, out=store).rows

    kind = base["interpolant"]["kind"]
    reference = solve(reference_steps, {"name": DILATED[kind], "k": reference_k},
                      reference_solver)
    failed = next((row for row in reference if row.get("error")), None)
    if failed is not None:
        raise FloatingPointError(f"the reference solve ({reference_steps} {reference_solver} "
                                 f"steps of {DILATED[kind]}) failed: {failed['error']}")
    rungs: list[dict[str, Any]] = []
    steps = 1
    while True:
        errors = paired_errors(solve(steps), reference, high, low)
        rungs.append({"steps": steps, **errors})
        if _ratio(rungs[-1], tol_weight, tol_var, SPREAD) <= 1 or steps >= max_steps:
            break
        steps = min(2 * steps, max_steps)
    ladder = [r["steps"] for r in rungs]

    def estimate(shift: float) -> float | None:
        return crossing(ladder, [_ratio(r, tol_weight, tol_var, shift) for r in rungs])

    return {"steps": estimate(0.0), "steps_low": estimate(-SPREAD),
            "steps_high": estimate(SPREAD), "rungs": rungs,
            "features": {"high": high.key, "low": low.key},
            "reference": {"steps": reference_steps, "solver": reference_solver,
                          "schedule": DILATED[kind],
                          **_reference_check(reference, high, low, base["sample"]["n"])}}
