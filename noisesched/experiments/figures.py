"""Figures of one run. Each function returns (figure, data) so the plotted numbers can be saved
beside the PNG."""

from __future__ import annotations

import numpy as np

from .._plotting import pyplot as _plt


def trajectories(ts, overlap, coords, title: str, overlap_label: str):
    """Overlap (or magnetisation) of many samples and three coordinates of a few, against t.

    ``ts`` (S,), ``overlap`` (S, T), ``coords`` (S, T, 3).
    """
    plt = _plt()
    ts, overlap, coords = map(np.asarray, (ts, overlap, coords))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(ts, overlap, lw=0.5, alpha=0.35, color="tab:blue")
    axes[0].set(xlabel="t", ylabel=overlap_label, title=f"{overlap_label} of {overlap.shape[1]} "
                "samples")
    for j in range(min(4, coords.shape[1])):
        for i in range(coords.shape[2]):
            axes[1].plot(ts, coords[:, j, i], lw=0.8, color=f"C{j}", alpha=0.8)
    axes[1].set(xlabel="t", ylabel="$X_t^i$", title="coordinates i = 1, 2, 3 of 4 samples")
    fig.suptitle(title)
    fig.tight_layout()
    return fig, {"ts": ts, "overlap": overlap, "coords": coords}


def final_features(model, rows: dict[str, np.ndarray], title: str):
    """The data law's own figure of its final features (``AbstractDataLaw.feature_figure``)
    from per-sample statistics (``noisesched.metrics.row_statistics``), or None."""
    return model.feature_figure(rows, title)


def save(out_dir, stem: str, fig, data) -> list[str]:
    """Write ``stem.png`` and ``stem.npz`` atomically; return their names."""
    from .io import atomic_write, save_figure

    plt = _plt()
    save_figure(out_dir / f"{stem}.png", fig)
    plt.close(fig)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in data.items()})

    atomic_write(out_dir / f"{stem}.npz", write)
    return [f"{stem}.png", f"{stem}.npz"]
