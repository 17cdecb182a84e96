"""Many configurations of one structure solved in one compiled call.

A configuration is a ``Point``: a model, an interpolant, a schedule and the PRNG key of its prior
draws. Points of one structure (``point_structure``: the same classes, static fields such as d,
leaf shapes, and key type) are solved together by ``solve_group``: their differing parameters are
stacked (``noisesched.sweeps._stack``) and the whole solve, prior draws included, runs in one
program per call (``solve_stacked``): ``configs_per_call`` points and ``rows`` samples per call,
sized to fit memory like ``noisesched.streaming`` sizes its chunks, ``vmap_width`` of them side
by side under ``jax.vmap`` (all of them on an accelerator, a few on a CPU, whose cache a wide
vmap leaves). Each point's final samples are then summarised by its own data law
(``noisesched.metrics.row_statistics`` and ``summary_from_rows``) exactly as
``noisesched.sample_summary`` summarises a single run: point j gets the numbers of
``sample_summary(model_j, interp_j, schedule_j, key_j, n, ...)`` (the same prior rows,
``fold_in(key_j, i)`` for row i, and the same solve, up to the order in which the compiler sums
over coordinates in the batched program).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .. import metrics
from .._progress import progress_bar
from .._solve.solvers import SolverLike
from .._typing import IntLike
from .._validation import as_dtype, as_int, check_int, check_key
from ..interpolants import Interpolant
from ..models.base import AbstractDenoiser, check_data_law
from ..sampling import max_steps_error, sample_prior, solve
from ..schedules import AbstractSchedule, check_convention, check_schedule
from ..streaming import auto_chunk_size
from ._stack import Stacking, structure, unstack

__all__ = ["Point", "PointSource", "PointSummary", "point_structure", "solve_stacked",
           "call_sizes", "solve_group", "sample_summaries", "CPU_VMAP_WIDTH"]


class Point(NamedTuple):
    """One configuration: what ``noisesched.sample_summary`` takes besides the batch size and
    the solver options.

    Attributes:
        model: the denoiser and data law (``noisesched.AbstractModel``, or a trained network
            with its law).
        interp: the interpolant (same d as the model).
        schedule: the schedule τ(t).
        key: the PRNG key of the prior draws: row i starts from ``fold_in(key, i)``.
    """

    model: AbstractDenoiser
    interp: Interpolant
    schedule: AbstractSchedule
    key: PRNGKeyArray


@runtime_checkable
class PointSource(Protocol):
    """Points by index: a list, or a sequence that builds each point when indexed."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Point: ...


class PointSummary(NamedTuple):
    """What a sweep reports for one point.

    Attributes:
        metrics: every feature of the data law with its target (``metrics.summary_from_rows``
            of the final samples); empty when the solve failed.
        num_steps: the solver steps taken (the most over the point's chunks of rows).
        error: None, or why the solve failed (nan or inf in the final samples, or an adaptive
            solve out of ``max_steps``): a sweep records the failure and goes on.
    """

    metrics: dict[str, float]
    num_steps: int
    error: str | None = None


def point_structure(point: Point) -> Hashable:
    """What points must share to be solved in one call: the structure of (model, interpolant,
    schedule) (``noisesched.sweeps._stack.structure``) and the type of the key."""
    key = jnp.asarray(point.key)
    return structure((point.model, point.interp, point.schedule)), key.shape, str(key.dtype)


#: Points vmapped together on a CPU (``solve_group``'s default ``vmap_width`` there). Measured
#: on a 2-core CPU (GM, N Euler steps): 2 to 8 points side by side solve 1.2 to 3 times faster
#: than one program call per point, while a vmap of all 64 points of a d = 10^3, n = 256 sweep
#: runs at 0.6 times the speed of that loop (its states leave the cache). Accelerators vmap every
#: point of a call.
CPU_VMAP_WIDTH = 4


@eqx.filter_jit
def solve_stacked(template, varying: Sequence[Array], key: Array, start: Int[Array, ""],
                  rows: int, dtype: Any, batched_key: bool, options: dict[str, Any],
                  vmap_width: int | None = None
                  ) -> tuple[Float[Array, "c rows d"], Int[Array, " c"], Bool[Array, " c"]]:
    """Rows ``start … start + rows − 1`` of X_1 for each of c stacked points, drawn and solved
    in one program: what ``noisesched.streaming`` runs for one point (``sample_prior`` then
    ``solve`` with ``options``), mapped over the stacked leaves ``varying`` (leading axis c)
    and over the keys (``batched_key``; else one key for all).

    The c points run ``vmap_width`` at a time, side by side under ``jax.vmap``, one batch after
    another in a ``jax.lax.map`` (None: all c in one vmap; else ``vmap_width`` ≥ 2 divides c).
    One point is solved as it is: a vmap of size 1 meets a miscompilation of XLA:CPU (JAX
    0.10.2: ``jnp.sum(x[..., None, :] * means, axis=-1)`` of x of shape (1, n, d) under
    ``jit`` gives every mean the first one's sum).

    ``template`` is ``Stacking.template()``: the points' shared leaves, constants or unbatched
    arguments of the program. Returns X_1 of shape (c, rows, d), the steps taken (c,) and
    whether each solve reached t = 1 (c,).
    """

    def one(args):
        leaves, k = args if batched_key else (args, key)
        model, interp, schedule = unstack(template, leaves)
        x0 = sample_prior(interp, k, rows, dtype, start=start, schedule=schedule)
        sol = solve(model, interp, schedule, x0, **options)
        return sol.x, sol.num_steps, sol.reached_end

    xs = (list(varying), key) if batched_key else list(varying)
    count = jax.tree.leaves(xs)[0].shape[0]
    if count == 1:
        first = jax.tree.map(lambda a: a[0], xs)
        return jax.tree.map(lambda a: a[None], one(first))
    if vmap_width is None or vmap_width >= count:
        return jax.vmap(one)(xs)
    if vmap_width < 2 or count % vmap_width:
        raise ValueError(f"vmap_width must be >= 2 and divide the {count} points; got "
                         f"{vmap_width}")
    return jax.lax.map(one, xs, batch_size=vmap_width)


def _failure(x: np.ndarray | Array, reached_end: bool, start: int, options: dict) -> str | None:
    if not reached_end:
        return str(max_steps_error(options.get("max_steps", 16_384), options.get("rtol", 1e-4),
                                   options.get("atol", 1e-4)))
    finite = np.asarray(jnp.all(jnp.isfinite(x), axis=-1))
    if not finite.all():
        return (f"nan or inf in the final samples (first at sample {start + int(np.argmin(finite))}"
                "; noisesched.first_nonfinite on that configuration tells the step and time)")
    return None


def call_sizes(d: int, n: int, count: int, dtype, chunk_size: int | None,
               configs_per_call: int | None, vmap_width: int | None) -> tuple[int, int, int]:
    """(rows per call, points per call, points vmapped together) for ``count`` points of
    dimension ``d`` with ``n`` samples each. Rows and points: as many as fit a quarter of the
    free memory of this process's first device, where its programs run (``auto_chunk_size``:
    about four live copies of the states), unless given. Width: ``CPU_VMAP_WIDTH`` on a CPU,
    every point of the call elsewhere, unless given; at least 2 (a lone point is solved as it
    is), and the points per call rounded up to a multiple of it (the last call padded)."""
    device = jax.local_devices()[0]
    fit = auto_chunk_size(d, dtype, [device])
    rows = min(n, chunk_size or fit)
    per_call = min(configs_per_call or max(1, fit // rows), count)
    width = vmap_width or (CPU_VMAP_WIDTH if device.platform == "cpu" else per_call)
    width = max(2, width)
    if per_call <= width:
        return rows, per_call, per_call
    return rows, -(-per_call // width) * width, width


def solve_group(
    points: PointSource,
    n: int,
    *,
    steps: IntLike = 100,
    solver: SolverLike = "euler",
    dtype: Any = None,
    chunk_size: int | None = None,
    configs_per_call: int | None = None,
    vmap_width: int | None = None,
    max_values: int = 200_000,
    **options: Any,
) -> Iterator[tuple[list[int], list[PointSummary]]]:
    """Solve ``points`` of one structure (``point_structure``), ``n`` samples each, and yield
    (indices into ``points``, their ``PointSummary``) after each compiled call.

    Args:
        points: the points; indexed (``points[i]``) once to find what differs between them and
            once more when solved, so a lazy sequence that builds each point keeps only one
            call's points in memory.
        n: samples per point.
        steps: the solver steps N (``noisesched.solve``'s).
        solver: the solver (``noisesched.solve``'s).
        dtype: dtype of the states (default JAX's default float).
        chunk_size: rows per call (None or 0: as many as fit, see ``call_sizes``).
        configs_per_call: points per call (None or 0: as many as fit); the last call is padded
            with copies of its last point (computed and dropped), so that one program serves the
            group.
        vmap_width: points solved side by side within a call (None or 0: ``CPU_VMAP_WIDTH``
            on a CPU, all the call's points elsewhere; see ``solve_stacked``).
        max_values: pooled entries kept for the distribution features (``metrics.row_statistics``).
        **options: ``noisesched.solve``'s other keyword arguments, the same for every point
            (``observe`` is not available).

    Every point's metrics are those of ``noisesched.sample_summary`` with the same arguments;
    a point whose solve fails gets its ``error`` instead, and the others go on.
    """
    check_int("n", n, lo=1)
    check_int("max_values", max_values, lo=1)
    for name, value in (("chunk_size", chunk_size), ("configs_per_call", configs_per_call),
                        ("vmap_width", vmap_width)):
        if value is not None:
            check_int(name, value, lo=0)
    if "observe" in options:
        raise ValueError("observe is not available in a sweep; call noisesched.solve on the "
                         "configuration to observe")
    if len(points) == 0:
        raise ValueError("points must hold at least one point")
    dtype = as_dtype("dtype", dtype)
    # a NumPy integer would be traced by the compiled call: solve needs step counts as numbers
    options = {key: int(value) if isinstance(value, np.integer) else value
               for key, value in options.items()}
    options = dict(options, steps=as_int("steps", steps, lo=1), solver=solver)
    first = point_structure(points[0])

    def members():
        for i in range(len(points)):
            point = points[i]
            check_key(f"points[{i}].key", point.key)
            check_schedule(point.schedule, f"points[{i}].schedule")
            check_convention(point.schedule, stacklevel=4)  # as ns.solve does for one problem
            check_data_law(point.model, "a sweep")
            if point.interp.d != point.model.d:
                raise ValueError(f"points[{i}]: interpolant d = {point.interp.d} must equal the "
                                 f"model's d = {point.model.d}")
            if i and point_structure(point) != first:
                raise ValueError(f"points[{i}] differs from points[0] in structure (model or "
                                 "schedule class, d, interpolant, shapes of the parameters, or "
                                 "a non-float parameter): solve them in separate groups")
            yield (point.model, point.interp, point.schedule), point.key

    stacking = Stacking.of(members())
    rows, per_call, width = call_sizes(points[0].model.d, n, len(points), dtype, chunk_size,
                                       configs_per_call, vmap_width)
    template = stacking.template()
    for begin in range(0, len(points), per_call):
        indices = list(range(begin, min(begin + per_call, len(points))))
        chunk = [points[i] for i in indices]
        padded = chunk + [chunk[-1]] * (per_call - len(chunk))
        varying, key = stacking.stack([(p.model, p.interp, p.schedule) for p in padded],
                                      [p.key for p in padded])
        laws = [check_data_law(p.model, "a sweep") for p in chunk]
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in chunk]
        taken = [0] * len(chunk)
        errors: list[str | None] = [None] * len(chunk)
        for start in range(0, n, rows):
            x, steps_out, reached_out = solve_stacked(
                template, varying, key, jnp.asarray(start), rows, dtype, stacking.batched_key,
                options, None if width >= per_call else width)
            num_steps, reached_end = np.asarray(steps_out), np.asarray(reached_out)
            valid = min(rows, n - start)
            for j, law in enumerate(laws):
                if errors[j] is not None:
                    continue
                errors[j] = _failure(x[j, :valid], bool(reached_end[j]), start, options)
                if errors[j] is None:
                    # the padding rows stay in: every block is summarised with one shape, as
                    # sample_summary does
                    parts[j].append(metrics.row_statistics(law, x[j], start=start, total=n,
                                                           max_values=max_values))
                    taken[j] = max(taken[j], int(num_steps[j]))
        summaries = [
            PointSummary({}, taken[j], errors[j]) if errors[j] is not None else PointSummary(
                metrics.summary_from_rows(law, metrics.concatenate_rows(parts[j])), taken[j])
            for j, law in enumerate(laws)]
        yield indices, summaries


def sample_summaries(
    points: Sequence[Point],
    n: int,
    *,
    steps: IntLike = 100,
    solver: SolverLike = "euler",
    progress: bool = False,
    **options: Any,
) -> list[PointSummary]:
    """``noisesched.sample_summary`` of every point, ``n`` samples each: the points grouped by
    structure (``point_structure``, in order of first appearance), each group solved by
    ``solve_group`` in as few compiled, vmapped calls as fit memory. ``options``: those of
    ``solve_group`` (``dtype``, ``chunk_size``, ``configs_per_call``, ``vmap_width``,
    ``max_values``) and of ``noisesched.solve``. Returns one ``PointSummary`` per point, in
    order."""
    groups: dict[Hashable, list[int]] = {}
    for i, point in enumerate(points):
        groups.setdefault(point_structure(point), []).append(i)
    out: list[PointSummary | None] = [None] * len(points)
    bar = progress_bar(len(points), desc="sweep", enabled=progress)
    try:
        for indices in groups.values():
            group = [points[i] for i in indices]
            for done, summaries in solve_group(group, n, steps=steps, solver=solver, **options):
                for j, summary in zip(done, summaries, strict=True):
                    out[indices[j]] = summary
                bar.update(len(done))
    finally:
        bar.close()
    return [s for s in out if s is not None]
