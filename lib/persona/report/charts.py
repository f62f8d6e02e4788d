"""The report's pictures: matplotlib (Agg) figures returned as base64 PNG data URIs.

Every function takes small, already aggregated data (lists, dicts, numpy arrays), never a
Spark DataFrame.
"""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899",
           "#84cc16", "#f97316", "#6366f1", "#14b8a6", "#a855f7", "#eab308", "#64748b"]
plt.rcParams.update({
    "font.family": "DejaVu Sans", "font.size": 10, "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED, "xtick.color": MUTED, "ytick.color": MUTED,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110,
})


def colour(segment: int) -> str:
    """The segment's colour, the same in every picture and card."""
    return PALETTE[segment % len(PALETTE)]


def png_data_uri(png: bytes) -> str:
    """A PNG image as a data URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_data_uri(fig) -> str:
    """Render ``fig`` as a PNG data URI and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return png_data_uri(buffer.getvalue())


def sizes_chart(segments: list[int], names: list[str], sizes: list[int]) -> str:
    """Horizontal bars: users per segment, largest on top, labelled with count and share."""
    total = sum(sizes) or 1
    order = sorted(range(len(segments)), key=lambda i: sizes[i])
    fig, ax = plt.subplots(figsize=(6.4, max(4.6, 0.6 * len(segments) + 0.8)))
    bars = ax.barh([names[i] for i in order], [sizes[i] for i in order],
                   color=[colour(segments[i]) for i in order], height=0.65)
    for bar, i in zip(bars, order):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f"  {sizes[i]:,}  ({sizes[i] / total:.0%})", va="center", color=INK, fontsize=10)
    ax.set_xlim(0, max(sizes) * 1.3)
    ax.xaxis.set_visible(False)
    ax.spines["bottom"].set_visible(False)
    ax.tick_params(axis="y", length=0, labelsize=11, labelcolor=INK)
    ax.set_title("users per segment", color=MUTED, fontsize=10, loc="left")
    return to_data_uri(fig)


def heatmap_chart(names: list[str], features: list[str], z: np.ndarray,
                  labels: list[list[str]]) -> str:
    """Segments x features coloured by standardised difference from the population
    (red above, blue below), each cell showing the segment's value in its own unit."""
    fig, ax = plt.subplots(figsize=(1.05 * len(features) + 2.6, 0.62 * len(names) + 1.6))
    limit = max(1.0, float(np.nanmax(np.abs(z))) if z.size else 1.0)
    image = ax.imshow(np.nan_to_num(z), cmap="RdBu_r", aspect="auto",
                      norm=TwoSlopeNorm(0.0, -limit, limit))
    for i in range(len(names)):
        for j in range(len(features)):
            strong = abs(z[i, j]) > 0.6 * limit
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=8,
                    color="white" if strong else INK)
    ax.set_xticks(range(len(features)), features, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.tick_params(length=0, labelcolor=INK)
    for side in ax.spines.values():
        side.set_visible(False)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("standard deviations from the average user", color=MUTED)
    bar.outline.set_visible(False)
    return to_data_uri(fig)


def projection_chart(points: np.ndarray, segments: np.ndarray, names: dict[int, str]) -> str:
    """Users as dots in the plane of the embeddings' two main directions, by segment."""
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    for s in sorted(names):
        mask = segments == s
        ax.scatter(points[mask, 0], points[mask, 1], s=9, alpha=0.55, color=colour(s),
                   edgecolors="none", label=names[s])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("main direction 1")
    ax.set_ylabel("main direction 2")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False,
              markerscale=2.2, fontsize=9)
    return to_data_uri(fig)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The vectors projected on their two principal components."""
    centred = vectors - vectors.mean(axis=0)
    if len(centred) < 2:
        return np.zeros((len(centred), 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:2].T
    if basis.shape[1] < 2:
        basis = np.hstack([basis, np.zeros((basis.shape[0], 2 - basis.shape[1]))])
    return centred @ basis


def confusion_chart(matrices: dict[str, list[list[int]]], classes: list[str]) -> str:
    """One confusion matrix per model, side by side: cells shaded by the share of each
    true class (row), annotated with counts."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.0 * len(matrices) + 0.4,
                                                         0.45 * len(classes) + 2.2))
    axes = np.atleast_1d(axes)
    for ax, (title, matrix) in zip(axes, matrices.items()):
        counts = np.array(matrix, dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{int(counts[i, j]):,}", ha="center", va="center", fontsize=9,
                        color="white" if shares[i, j] > 0.6 else INK)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(title, color=INK, fontsize=10)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    fig.tight_layout()
    return to_data_uri(fig)


def scores_chart(tags: list[str], scores: dict[str, list[float]], metric: str) -> str:
    """Grouped bars: one metric of each model on each tag."""
    fig, ax = plt.subplots(figsize=(max(4.8, 1.5 * len(tags) + 2), 3.0))
    width = 0.8 / max(1, len(scores))
    shades = {"DNN": "#3b82f6", "logistic regression": "#94a3b8", "majority class": "#e2e8f0"}
    for k, (model, values) in enumerate(scores.items()):
        xs = np.arange(len(tags)) + (k - (len(scores) - 1) / 2) * width
        bars = ax.bar(xs, values, width * 0.92, label=model, color=shades.get(model, MUTED))
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center",
                    va="bottom", fontsize=8, color=INK)
    ax.set_xticks(range(len(tags)), tags)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(metric)
    ax.yaxis.grid(True, color=GRID)
    ax.set_axisbelow(True)
    ax.legend(frameon=False, fontsize=8, ncol=len(scores), loc="upper center",
              bbox_to_anchor=(0.5, 1.18))
    return to_data_uri(fig)


def values_chart(values: list[str], counts: list[int]) -> str:
    """How many users got each value of a tag."""
    total = sum(counts) or 1
    fig, ax = plt.subplots(figsize=(4.2, 0.42 * len(values) + 0.7))
    bars = ax.barh(values[::-1], counts[::-1], color="#3b82f6", height=0.6)
    for bar, c in zip(bars, counts[::-1]):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f"  {c / total:.0%}",
                va="center", fontsize=9, color=INK)
    ax.set_xlim(0, max(counts) * 1.25 if counts else 1)
    ax.xaxis.set_visible(False)
    ax.spines["bottom"].set_visible(False)
    ax.tick_params(axis="y", length=0, labelcolor=INK)
    ax.set_title("predicted for every user", color=MUTED, fontsize=10, loc="left")
    return to_data_uri(fig)
