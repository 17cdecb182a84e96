"""Figures of one run. Each function returns (figure, data) so the plotted numbers can be saved
beside the PNG."""

from __future__ import annotations

import math

import numpy as np

from ..models import CurieWeiss, GaussianMixture


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def final_histograms(model, rows: dict[str, np.ndarray], title: str, bins: int = 80):
    """Final overlap / magnetisation and within-mode coordinates against their exact laws, from
    per-sample statistics (``noisesched.metrics.row_statistics``)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    data: dict[str, np.ndarray] = {}
    if isinstance(model, GaussianMixture):
        resid = rows["values"]
        # standardised overlap along the assigned mean: (μ_k·x/|μ_k| − |μ_k|)/σ ~ N(0, 1)
        z = rows["overlap_z"]
        counts, edges = np.histogram(z, bins=bins, density=True)
        grid = np.linspace(min(edges[0], -4), max(edges[-1], 4), 400)
        dens = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)
        weights = np.bincount(rows["mode"], minlength=model.K) / rows["mode"].size
        target = np.asarray(model.weights)
        text = ", ".join(f"{w:.3f}" for w in weights) + " (target " + ", ".join(
            f"{w:.3f}" for w in target) + ")"
        axes[0].stairs(counts, edges, fill=True, alpha=0.5, label=f"samples; mode weights {text}")
        axes[0].plot(grid, dens, "k", lw=1, label="exact N(0, 1)")
        axes[0].set(xlabel="$(μ_k·x/|μ_k| - |μ_k|)/σ$", title="overlap along the assigned mean")
        data.update(overlap_counts=counts, overlap_edges=edges, overlap_grid=grid,
                    overlap_density=dens, mode_weights=weights, mode_weight_targets=target)
        rc, re = np.histogram(resid, bins=bins, density=True)
        rg = np.linspace(re[0], re[-1], 400)
        rd = np.exp(-0.5 * (rg / model.sigma) ** 2) / (model.sigma * math.sqrt(2 * math.pi))
        axes[1].stairs(rc, re, fill=True, alpha=0.5, label="samples")
        axes[1].plot(rg, rd, "k", lw=1, label=f"N(0, σ² = {model.sigma**2:g})")
        axes[1].set(xlabel="$x_i - μ_{k,i}$", title="within-mode coordinates")
        data.update(resid_counts=rc, resid_edges=re, resid_grid=rg, resid_density=rd)
    elif isinstance(model, CurieWeiss):  # CurieWeissExact too: each gives its own exact law
        mags = rows["magnetization"]
        levels, probs = map(np.asarray, model.magnetization_law())
        width = 2.0 / model.d
        step = max(1, int(round(0.02 / width)))  # pool levels into bins of width ≈ 0.02
        edges = np.append(levels[::step] - width / 2, levels[-1] + width / 2)
        counts, _ = np.histogram(mags, bins=edges)
        exact = np.add.reduceat(probs, np.arange(0, len(probs), step))
        axes[0].stairs(counts / len(mags), edges, fill=True, alpha=0.5, label="samples")
        axes[0].stairs(exact, edges, color="k", label="exact")
        axes[0].set(xlabel="magnetisation mean$_i$ sign$(x_i)$", ylabel="probability",
                    title="final magnetisation", yscale="log", ylim=(1e-5, 1.5))
        data.update(mag_edges=edges, mag_freq=counts / len(mags), mag_exact=exact)
        vals = rows["values"]
        vc, ve = np.histogram(vals, bins=bins)
        axes[1].stairs(vc / vals.size, ve, fill=True, alpha=0.5)
        axes[1].set(xlabel="$x_i$", ylabel="fraction", title="spin values (exact: ±1)")
        data.update(spin_counts=vc, spin_edges=ve)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, data


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
