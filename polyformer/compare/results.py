"""compare.json: every number of a comparison with its seed, budget and wall time, and the summary.

The layout is fixed by `compare.schema.json` beside this module (JSON Schema, draft 2020-12):

    {"schema": "polyformer-compare/1", "mode": "scratch" | "pretrained", "match": ..., "settings": {...},
     "models": [{name, arch, head, source, objective, non_embedding_parameters, parameters,
                 flops_per_token, pretrain_tokens, total_flops}],
     "measurements": [{model, task, metric, seed, value, higher_is_better, wall_s, budget}],
     "summary": [{model, task, metric, mean, std, n, higher_is_better}],
     "curves": {model: {seed: [{step, loss, eval_loss}]}}, "samples": [...], "attention": [...],
     "projections": [...], "environment": {...}, "wall_s": ...}

`std` is the sample standard deviation over seeds (0 for one seed); a value that is not a finite
number is stored as null.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

SCHEMA_ID = "polyformer-compare/1"
SCHEMA_FILE = Path(__file__).with_name("compare.schema.json")
LOWER_IS_BETTER = ("perplexity", "pseudo_perplexity", "loss", "pretrain_eval_loss")


def finite(value: Any) -> float | None:
    """A float, or None for NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def higher_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] not in LOWER_IS_BETTER


def measurements(records: list[dict[str, Any]], pretrain_tokens: dict[str, int | None]) -> list[dict[str, Any]]:
    """One row per (model, task, seed, metric) of the finished sub-runs."""
    rows = []
    for record in records:
        budget = {"pretrain_tokens": pretrain_tokens.get(record["model"]), **record.get("budget", {})}
        for metric, value in record.get("metrics", {}).items():
            rows.append({"model": record["model"], "task": record["task"], "metric": metric, "seed": record["seed"],
                         "value": finite(value), "higher_is_better": higher_is_better(metric),
                         "wall_s": float(record.get("wall_s", 0.0)), "budget": budget})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds of every (model, task, metric)."""
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    order: list[tuple[str, str, str]] = []
    for row in rows:
        key = (row["model"], row["task"], row["metric"])
        if key not in groups:
            order.append(key)
        if row["value"] is not None:
            groups[key].append(row["value"])
    summary = []
    for model, task, metric in order:
        values = groups[(model, task, metric)]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        summary.append({"model": model, "task": task, "metric": metric, "mean": mean, "std": std, "n": len(values),
                        "higher_is_better": higher_is_better(metric)})
    return summary


def headline(task: str, metrics: list[str]) -> str | None:
    """The figure a task's table row and bar chart show."""
    preferred = {"classify": ["accuracy"], "ner": ["f1"], "pair": ["accuracy"], "translate": ["bleu"],
                 "perplexity": ["perplexity", "pseudo_perplexity"], "zero-shot": ["accuracy"],
                 "pretrain": ["pretrain_eval_loss"]}.get(task, [])
    for name in preferred:
        if name in metrics:
            return name
    if task == "embed":
        for suffix in ("mrr@10", "v_measure", "knn_accuracy"):
            found = [m for m in metrics if m.endswith(suffix) and "/" in m]
            if found:
                return found[0]
    return metrics[0] if metrics else None


def environment() -> dict[str, Any]:
    import torch

    import polyformer

    return {"polyformer": getattr(polyformer, "__version__", "unknown"), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "threads": torch.get_num_threads()}


def assemble(settings: dict[str, Any], models: list[dict[str, Any]], records: list[dict[str, Any]],
             wall_s: float) -> dict[str, Any]:
    """The whole compare.json from the models and the finished sub-runs' records."""
    tokens = {model["name"]: model.get("pretrain_tokens") for model in models}
    rows = measurements([r for r in records if r["task"] not in ("attention",)], tokens)
    curves: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(dict)
    samples, attention, projections = [], [], []
    for record in records:
        extra = record.get("extra", {})
        if record["task"] == "pretrain":
            curves[record["model"]][str(record["seed"])] = [
                {key: (int(value) if key == "step" else finite(value)) for key, value in row.items()
                 if finite(value) is not None} for row in record.get("curve", [])]
        elif record["task"] == "generate":
            samples.append({"model": record["model"], "seed": record["seed"], "prompt": extra["prompt"],
                            "text": extra["text"]})
        elif record["task"] == "attention":
            attention.extend({"model": record["model"], **item} for item in extra.get("maps", []))
        elif record["task"] == "embed" and extra.get("projection") and record["seed"] == 0:
            projections.append({"model": record["model"], **extra["projection"]})
    return {"schema": SCHEMA_ID, "mode": settings["mode"], "match": settings.get("match"), "settings": settings,
            "models": models, "measurements": rows, "summary": summarize(rows), "curves": dict(curves),
            "samples": samples, "attention": attention, "projections": projections,
            "environment": environment(), "wall_s": float(wall_s)}
