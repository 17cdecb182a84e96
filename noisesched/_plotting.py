"""matplotlib, imported on first use with a non-interactive backend (figures go to files)."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
