"""The report's figures as PNG bytes (matplotlib, Agg backend: no display, no network).

Loss curves per model, a bar chart per task with ± std error bars, attention heatmaps with the
tokens on the axes, and 2-D PCA projections of embeddings coloured by label.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(figure)
    return buffer.getvalue()


def loss_curves(curves: dict[str, dict[int, list[dict[str, float]]]]) -> bytes:
    """One panel per model: training loss (and evaluation loss, dashed) against the step, one line per seed."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, max(1, len(curves)), figsize=(4.2 * max(1, len(curves)), 3.4), squeeze=False)
    for axis, (model, seeds) in zip(axes[0], curves.items()):
        for seed, rows in sorted(seeds.items()):
            train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
            evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
            if train:
                line, = axis.plot(*zip(*train), linewidth=1, label=f"seed {seed}")
                if evals:
                    axis.plot(*zip(*evals), linestyle="--", marker=".", color=line.get_color())
        axis.set_title(model)
        axis.set_xlabel("step")
        axis.set_ylabel("loss (dashed: held out)")
        axis.legend(fontsize=7)
    return _png(figure)


def bar_chart(title: str, metric: str, rows: Sequence[tuple[str, float, float]]) -> bytes:
    """Mean ± std of `metric` per model."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 3.2))
    names = [name for name, _, _ in rows]
    means = [mean for _, mean, _ in rows]
    errors = [std for _, _, std in rows]
    axis.bar(range(len(rows)), means, yerr=errors, capsize=5, color=[f"C{i}" for i in range(len(rows))])
    axis.set_xticks(range(len(rows)), names, rotation=15, fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(metric, fontsize=8)
    return _png(figure)


def heatmap_grid(panels: Sequence[tuple[np.ndarray, list[str], list[str], str]], columns: int) -> bytes:
    """Heatmaps of (queries, keys) weights, tokens on the axes, `columns` to a row (each scaled 0 .. its largest weight)."""
    plt = _pyplot()
    columns = max(1, min(columns, len(panels)))
    rows = (len(panels) + columns - 1) // columns
    longest = max(max(len(q), len(k)) for _, q, k, _ in panels)
    side = min(6.0, max(2.6, 0.24 * longest + 1.2))
    figure, axes = plt.subplots(rows, columns, figsize=(side * columns, side * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis, (weights, queries, keys, title) in zip(axes.flat, panels):
        axis.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
        axis.set_xticks(range(len(keys)), keys, rotation=90, fontsize=7)
        axis.set_yticks(range(len(queries)), queries, fontsize=7)
        axis.set_title(title, fontsize=8)
    return _png(figure)


def projections(items: Sequence[tuple[str, dict[str, Any]]]) -> bytes:
    """Side-by-side 2-D projections, one per model, points coloured by label."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, max(1, len(items)), figsize=(4.2 * max(1, len(items)), 3.8), squeeze=False)
    for axis, (model, projection) in zip(axes[0], items):
        points = np.asarray(projection["points"])
        labels = projection["labels"]
        for index, label in enumerate(sorted(set(labels))):
            chosen = np.array([item == label for item in labels])
            axis.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.6, color=f"C{index % 10}", label=label)
        axis.set_title(f"{model}: {projection['set']}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(fontsize=6, markerscale=2)
    return _png(figure)
