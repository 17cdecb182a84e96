"""Stacking pytrees that share a structure: the leaves that differ between them become a
leading axis to ``jax.vmap`` over, the leaves they share stay as they are.

Two pytrees (here the model, interpolant and schedule of two configurations) can be solved in
one compiled, vmapped call when they have the same ``structure``: the same tree definition
(classes, static fields such as ``d``, the interpolant's kind and shape), the same shape and
dtype for every array leaf, and the same value for every leaf that is neither an array nor a
Python float (ints, strings, ...). Python float leaves (``GaussianMixture.sigma``, a schedule's
``k``) may differ: those that do are stacked into arrays of the default float dtype, those that
do not stay Python floats, constants of the compiled program exactly as in a single solve.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

__all__ = ["structure", "Stacking", "unstack"]


def _leaf_signature(leaf: Any) -> Hashable:
    if eqx.is_array(leaf):
        return ("array", tuple(leaf.shape), str(leaf.dtype))
    if isinstance(leaf, float):
        return ("float",)
    try:
        hash(leaf)
    except TypeError:
        return ("object", type(leaf).__name__, id(leaf))  # never shared: solved on its own
    return ("value", type(leaf).__name__, leaf)


def structure(tree: PyTree) -> Hashable:
    """What two pytrees must share to be stacked: the tree definition and each leaf's
    signature (shape and dtype of an array, "a float", or the value of any other leaf)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(_leaf_signature(leaf) for leaf in leaves)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if eqx.is_array(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):  # typed keys: their data
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        x, y = np.asarray(a), np.asarray(b)
        return x.shape == y.shape and x.dtype == y.dtype and bool(
            np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    return type(a) is type(b) and bool(a == b)


@dataclasses.dataclass(frozen=True)
class Stacking:
    """Which leaves of a group of pytrees of one ``structure`` differ between its members, and
    whether their PRNG keys do.

    Attributes:
        treedef: the common tree definition.
        reference: the leaves of the first member (those that do not vary are every member's).
        varying: positions (in ``jax.tree.leaves`` order) of the leaves that differ.
        batched_key: whether the keys differ (always True when no leaf does, so that a vmap
            has an axis to map).
    """

    treedef: Any
    reference: tuple[Any, ...]
    varying: tuple[int, ...]
    batched_key: bool

    @classmethod
    def of(cls, members: Iterable[tuple[PyTree, Array]]) -> Stacking:
        """The stacking of ``members``, pairs (pytree, PRNG key) whose pytrees share one
        ``structure``."""
        reference: tuple[Any, ...] | None = None
        treedef = None
        first_key = None
        varying: set[int] = set()
        batched_key = False
        for tree, key in members:
            leaves, tdef = jax.tree.flatten(tree)
            if reference is None:
                reference, treedef, first_key = tuple(leaves), tdef, key
                continue
            if tdef != treedef or len(leaves) != len(reference):
                raise ValueError("the pytrees of one stacking must share a structure")
            varying.update(i for i, (a, b) in enumerate(zip(reference, leaves, strict=True))
                           if i not in varying and not _same(a, b))
            batched_key = batched_key or not _same(first_key, key)
        if reference is None:
            raise ValueError("a stacking needs at least one pytree")
        return cls(treedef, reference, tuple(sorted(varying)), batched_key or not varying)

    def template(self) -> tuple[Any, tuple[Any, ...], tuple[int, ...]]:
        """(tree definition, the shared leaves with None where a leaf varies, the varying
        positions): the unbatched part of a stacked call, rebuilt by ``unstack``."""
        fixed = tuple(None if i in self.varying else leaf
                      for i, leaf in enumerate(self.reference))
        return self.treedef, fixed, self.varying

    def stack(self, trees: Sequence[PyTree], keys: Sequence[Array]
              ) -> tuple[list[Array], Array]:
        """(the varying leaves of ``trees``, each stacked on a new leading axis; their keys
        stacked likewise, or the first key alone when they do not vary)."""
        leaves = [jax.tree.leaves(tree) for tree in trees]
        stacked = []
        for i in self.varying:
            values = [member[i] for member in leaves]
            if eqx.is_array(self.reference[i]):
                stacked.append(jnp.stack([jnp.asarray(v) for v in values]))
            else:  # Python floats: arrays of the default float dtype
                stacked.append(jnp.asarray(np.asarray(values, np.float64),
                                           dtype=jnp.result_type(float)))
        key = jnp.stack(list(keys)) if self.batched_key else keys[0]
        return stacked, key


def unstack(template: tuple[Any, tuple[Any, ...], tuple[int, ...]], varying: Sequence[Any]
            ) -> PyTree:
    """The pytree of one member: the template's shared leaves with ``varying`` (one member's
    slice of the stacked leaves) put back at their positions."""
    treedef, fixed, positions = template
    leaves = list(fixed)
    for i, value in zip(positions, varying, strict=True):
        leaves[i] = value
    return jax.tree.unflatten(treedef, leaves)
