"""matplotlib, imported on first use with a non-interactive backend (figures go to files)."""

from __future__ import annotations

import math

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram_against_normal(ax, values: np.ndarray, *, scale: float = 1.0, bins: int = 80,
                             label: str = "samples", exact_label: str = "exact N(0, 1)"
                             ) -> dict[str, np.ndarray]:
    """A density histogram of ``values`` on ``ax`` with the density of N(0, scale²); returns
    the plotted numbers (``counts``, ``edges``, ``grid``, ``density``)."""
    counts, edges = np.histogram(values, bins=bins, density=True)
    grid = np.linspace(min(edges[0], -4 * scale), max(edges[-1], 4 * scale), 400)
    density = np.exp(-0.5 * (grid / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
    ax.stairs(counts, edges, fill=True, alpha=0.5, label=label)
    ax.plot(grid, density, "k", lw=1, label=exact_label)
    return {"counts": counts, "edges": edges, "grid": grid, "density": density}
