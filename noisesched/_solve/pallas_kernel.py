"""``method="pallas"``: a fixed-grid Euler or Heun solve as one Pallas kernel that keeps each
block of rows on chip for all N steps.

Each program of the kernel's grid loads one block of rows (B, d) of X_0, runs every step of the
grid on it in registers / on-chip memory, and writes X at the end of the grid: the state crosses
the memory bus once each way per solve instead of twice per step. The step is the fused loop's
(``fused``): the drift from the model's statistics form (``statistics_for_blocks``, whose
elementwise parts stay on chip too), the statistics of the next step computed with the update.
The interpolant's coefficients at every stage are tabulated before the kernel (one row per step,
start and end, one-sided at the schedule's kinks as everywhere else), so the kernel evaluates
no schedule.

Gradients: the kernel is wrapped in a ``jax.custom_vjp`` whose backward pass recomputes the solve
with the XLA path (``method="scan"``) and differentiates that: the same arithmetic,
so the same gradient up to float rounding, at the memory cost of the scan path's checkpoints.

On a GPU a row longer than on-chip memory allows (``default_kernel_rows``), or a block or model
array whose size is not a power of two (the Triton lowering loads only those:
``kernel_lowers_on_gpu``), takes the fused loop instead. Off a GPU the kernel runs in Pallas'
interpreter, which is how it is tested on a CPU. Models: those with a statistics form (the
exact Gaussian mixture, Curie–Weiss); ``noisesched.solve`` refuses any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Float

from ..interpolants import Coefficients
from .grid import Grid, Step
from .options import Options
from .problem import Batch, Problem
from .solvers import registry_name
from .stepping import STEP_METHODS

__all__ = ["pallas_solve", "default_kernel_rows", "PALLAS_SOLVERS"]

#: The solvers the kernel runs.
PALLAS_SOLVERS = ("euler", "heun")

#: On-chip bytes a block's state may take on a GPU (its live copies, the next state, a stage
#: and the carried statistics, stay within a streaming multiprocessor's shared memory and
#: registers).
_ON_CHIP_BYTES = 64 * 1024


def default_kernel_rows(d: int, dtype, platform: str) -> int | None:
    """Rows per program: on a GPU the largest power of two whose block fits ``_ON_CHIP_BYTES``,
    or None when not one row does (the solve then takes the fused loop); elsewhere (the
    interpreter) 8."""
    if platform != "gpu":
        return 8
    rows = _ON_CHIP_BYTES // (d * jnp.dtype(dtype).itemsize)
    return None if rows < 1 else 2 ** int(math.log2(rows))


def _power_of_two(size: int) -> int:
    return 1 << max(0, size - 1).bit_length()


def _coefficient_table(problem: Problem, times: Float[Array, " steps"]
                       ) -> Float[Array, "rows 8"]:
    """The coefficients at each of ``times``, one row per time (the fields of
    ``Coefficients`` in order), padded with zeros to a power of two in both axes (the GPU
    lowering loads arrays of power-of-two sizes only)."""
    c = jax.vmap(problem.coefficients)(times)
    table = jnp.stack([jnp.broadcast_to(v, times.shape).astype(times.dtype) for v in c], -1)
    return jnp.pad(table, ((0, _power_of_two(table.shape[0]) - table.shape[0]), (0, 3)))


def kernel_lowers_on_gpu(model, d: int, rows: int) -> bool:
    """Whether every array the kernel loads has a power-of-two size, as the GPU (Triton)
    lowering requires: the block (rows, d) and each array of the model."""
    sizes = [rows * d] + [int(leaf.size) for leaf in jax.tree.leaves(eqx.filter(model,
                                                                                 eqx.is_array))]
    return all(size == _power_of_two(size) for size in sizes)


def _kernel_solve(problem: Problem, x0: Batch, grid: Grid, name: str, rows: int,
                  interpret: bool) -> Batch:
    n, d = x0.shape
    steps = grid.steps
    table = grid.table()
    starts = _coefficient_table(problem, table.start)
    ends = _coefficient_table(problem, table.end)
    dts = (table.ts[1:] - table.ts[:-1]).astype(x0.dtype)
    dts = jnp.pad(dts, (0, _power_of_two(steps) - steps))
    model = problem.model
    dynamic, static = eqx.partition(model, eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    shapes = [leaf.shape for leaf in leaves]
    flat = [jnp.reshape(leaf, (-1,)) for leaf in leaves]  # 1-D inputs: no 0-d refs
    method = STEP_METHODS[name]

    blocks = math.ceil(n / rows)
    padded = jnp.pad(x0, ((0, blocks * rows - n), (0, 0)), mode="edge")

    def kernel(x_ref, starts_ref, ends_ref, dts_ref, *refs):
        *leaf_refs, out_ref = refs
        values = [ref[...].reshape(shape) for ref, shape in zip(leaf_refs, shapes, strict=True)]
        block_model = eqx.combine(jax.tree.unflatten(treedef, values), static)

        def coefficients(ref, i):
            return Coefficients(*(ref[i, j] for j in range(5)))

        def velocity(c, y, stats):
            return block_model.velocity_from_statistics(c, y, stats)

        def step(i, carry):
            x, stats = carry
            c_start, c_end = coefficients(starts_ref, i), coefficients(ends_ref, i)
            dt = dts_ref[i]

            def at_end(t, y):
                # given the velocity at the start (v0), a step method evaluates the drift
                # only at the step's end (Heun's corrector), with statistics of its own
                return velocity(c_end, y, block_model.statistics_for_blocks(c_end, y))

            zero = jnp.zeros((), dt.dtype)
            x = method(at_end, Step(t0=zero, t1=dt, start=zero, end=dt), x,
                       velocity(c_start, x, stats))
            nxt = jnp.minimum(i + 1, steps - 1)
            return x, block_model.statistics_for_blocks(coefficients(starts_ref, nxt), x)

        x = x_ref[...]
        stats = block_model.statistics_for_blocks(coefficients(starts_ref, 0), x)
        x, _ = jax.lax.fori_loop(0, steps, step, (x, stats))
        out_ref[...] = x

    whole = pl.BlockSpec()
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(padded.shape, x0.dtype),
        grid=(blocks,),
        in_specs=[pl.BlockSpec((rows, d), lambda i: (i, 0)), whole, whole, whole,
                  *([whole] * len(flat))],
        out_specs=pl.BlockSpec((rows, d), lambda i: (i, 0)),
        interpret=interpret,
        name="noisesched_fixed_grid_solve",
    )(padded, starts, ends, dts, *flat)
    return out[:n]


def pallas_solve(problem: Problem, x0: Batch, grid: Grid, options: Options,
                 reference: Callable[[Problem, Grid, Batch], Batch]) -> Batch:
    """X at the end of ``grid`` from ``x0`` by the kernel, differentiable: the backward pass
    differentiates ``reference(problem, grid, x0)`` (the XLA solve of the same grid)."""
    name = registry_name(options.solver)
    assert name is not None
    platform = jax.default_backend()
    rows = options.row_block or default_kernel_rows(x0.shape[1], x0.dtype, platform)
    interpret = platform != "gpu"
    if rows is None or not (interpret or kernel_lowers_on_gpu(problem.model, x0.shape[1], rows)):
        # a row longer than on-chip memory, or sizes the GPU lowering cannot load: the fused
        # loop, one pass per step
        return reference(problem, grid, x0)
    # a custom VJP closes over no traced value: every array is an argument; the grid's
    # times are not differentiated (zero cotangent)
    dynamic, static = eqx.partition(problem, eqx.is_array)
    grid_arrays, grid_static = eqx.partition(grid, eqx.is_array)

    @jax.custom_vjp
    def solve(dynamic, grid_arrays, x0):
        return _kernel_solve(eqx.combine(dynamic, static), x0,
                             eqx.combine(grid_arrays, grid_static), name, rows, interpret)

    def forward(dynamic, grid_arrays, x0):
        return solve(dynamic, grid_arrays, x0), (dynamic, grid_arrays, x0)

    def backward(saved, cotangent):
        dynamic, grid_arrays, x0 = saved
        grid = eqx.combine(grid_arrays, grid_static)
        _, pullback = jax.vjp(lambda p, x: reference(eqx.combine(p, static), grid, x),
                              dynamic, x0)
        d_problem, d_x0 = pullback(cotangent)
        return d_problem, jax.tree.map(jnp.zeros_like, grid_arrays), d_x0

    solve.defvjp(forward, backward)
    return solve(dynamic, grid_arrays, x0)
