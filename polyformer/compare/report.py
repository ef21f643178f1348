"""A comparison as tables and one self-contained HTML page.

- `table_rows`: one row per (task, figure) with "mean ± std" per model — the terminal table (rich),
  compare.md and the page share it; "—" marks a task a model does not run.
- `write_html`: report.html, one file with every figure inline (base64 PNG) and no request to any
  other address: the table, the models (non-embedding parameters, FLOPs), loss curves per model,
  a bar chart per task with ± std error bars, the three attention patterns (bidirectional, causal,
  cross) on one sentence, a 2-D projection of each model's embeddings coloured by label, the
  generation samples side by side, and the settings and command that reproduce the run.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from polyformer.compare import plots
from polyformer.compare.results import headline
from polyformer.runtime import write_atomic

EMBED_VARIANTS = ("mean", "mean+contrastive", "token", "token+contrastive")


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["mean"] is None:
        return "—"
    mean, std = entry["mean"], entry["std"] or 0.0
    digits = 2 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if entry["n"] > 1 else f"{mean:.{digits}f}"


def table_metrics(task: str, metrics: list[str]) -> list[str]:
    """The figures a task shows in the table: its headline; for embeddings that figure per pooling and stage."""
    main = headline(task, metrics)
    if main is None:
        return []
    if task == "perplexity":  # the encoder's pseudo-perplexity is its own row: not the same quantity
        return [name for name in ("perplexity", "pseudo_perplexity") if name in metrics]
    if task != "embed":
        return [main]
    figure = main.split("/", 1)[1]
    return [f"{variant}/{figure}" for variant in EMBED_VARIANTS if f"{variant}/{figure}" in metrics]


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): task, figure, then one 'mean ± std' cell per model."""
    models = [model["name"] for model in results["models"]]
    index = {(s["model"], s["task"], s["metric"]): s for s in results["summary"]}
    tasks = list(dict.fromkeys(s["task"] for s in results["summary"]))
    rows = []
    for task in tasks:
        metrics = list(dict.fromkeys(s["metric"] for s in results["summary"] if s["task"] == task))
        for metric in table_metrics(task, metrics):
            arrow = "↑" if index_any(index, task, metric)["higher_is_better"] else "↓"
            rows.append([task, f"{metric} {arrow}", *[_cell(index.get((m, task, metric))) for m in models]])
    rows.append(["model", "non-embedding parameters", *[f"{m['non_embedding_parameters']:,}" for m in results["models"]]])
    rows.append(["model", "training GFLOPs per token", *[_flops(m.get("flops_per_token"), 1e9) for m in results["models"]]])
    rows.append(["model", "pretraining tokens", *[f"{m['pretrain_tokens']:,}" if m.get("pretrain_tokens") else "—"
                                                  for m in results["models"]]])
    rows.append(["model", "pretraining PFLOPs", *[_flops(m.get("total_flops"), 1e15) for m in results["models"]]])
    return ["task", "figure", *models], rows


def index_any(index: dict, task: str, metric: str) -> dict[str, Any]:
    return next(entry for (_, t, m), entry in index.items() if t == task and m == metric)


def _flops(value: float | None, unit: float) -> str:
    return "—" if value is None else f"{value / unit:.4g}"


def markdown(results: dict[str, Any]) -> str:
    header, rows = table_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(results: dict[str, Any], console) -> None:
    from rich.table import Table

    header, rows = table_rows(results)
    title = f"polyformer compare ({results['mode']}, match={results.get('match') or '—'}, seeds={results['settings']['seeds']})"
    table = Table(title=title)
    for name in header:
        table.add_column(name, justify="left" if name in ("task", "figure") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# ---- the HTML page ---------------------------------------------------------------------------------
def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(results: dict[str, Any]) -> list[str]:
    images = []
    models = [model["name"] for model in results["models"]]
    for task in dict.fromkeys(s["task"] for s in results["summary"]):
        metrics = list(dict.fromkeys(s["metric"] for s in results["summary"] if s["task"] == task))
        for metric in table_metrics(task, metrics)[:2]:
            found = {s["model"]: s for s in results["summary"] if s["task"] == task and s["metric"] == metric}
            rows = [(m, found[m]["mean"], found[m]["std"] or 0.0) for m in models if m in found and found[m]["mean"] is not None]
            if rows:
                images.append(_img(plots.bar_chart(f"{task}: {metric}", metric, rows), f"{task} {metric}"))
    return images


def _attention(results: dict[str, Any]) -> str:
    maps = results["attention"]
    if not maps:
        return "<p>No attention maps.</p>"
    panels = [(_array(m["weights"]), m["query_tokens"], m["key_tokens"], f"{m['model']}: {m['kind']} (layer {m['layer']}, mean of heads)")
              for m in maps]
    return _img(plots.heatmap_grid(panels, columns=len(panels)), "attention patterns")


def _array(rows: list[list[float]]):
    import numpy as np

    return np.asarray(rows, dtype=float)


def _samples(results: dict[str, Any]) -> str:
    if not results["samples"]:
        return "<p>No generation samples (the generate task did not run).</p>"
    models = list(dict.fromkeys(s["model"] for s in results["samples"]))
    seeds = sorted({s["seed"] for s in results["samples"]})
    text = {(s["model"], s["seed"]): s["text"] for s in results["samples"]}
    rows = [[f"seed {seed}", *[text.get((m, seed), "—") for m in models]] for seed in seeds]
    prompt = html.escape(results["samples"][0]["prompt"])
    return f"<p>Prompt: <q>{prompt}</q></p>" + _html_table(["", *models], rows)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}
td:first-child,th:first-child,td:nth-child(2){text-align:left}img{max-width:100%;margin:0.5em 0;display:block}
.bars{display:flex;flex-wrap:wrap;gap:8px}.bars img{max-width:460px}pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def write_html(results: dict[str, Any], path: Path) -> Path:
    header, rows = table_rows(results)
    curves = results["curves"]
    sections = [
        f"<h1>polyformer compare — {html.escape(results['mode'])}</h1>",
        f"<p>Matching: <b>{html.escape(str(results.get('match') or 'none (pretrained models)'))}</b>. "
        f"Seeds: {results['settings']['seeds']}. Wall time: {results['wall_s']:.0f} s.</p>",
        "<h2>Results (mean ± std over seeds)</h2>", _html_table(header, rows),
        "<h2>Loss curves</h2>", _img(plots.loss_curves(curves), "loss curves") if curves else "<p>No pretraining.</p>",
        "<h2>Per task</h2>", '<div class="bars">' + "".join(_bars(results)) + "</div>",
        "<h2>Attention on one sentence</h2>", _attention(results),
        "<h2>Embeddings (2-D PCA, coloured by label)</h2>",
        _img(plots.projections([(p["model"], p) for p in results["projections"]]), "embedding projections")
        if results["projections"] else "<p>No embeddings (the embed task did not run).</p>",
        "<h2>Generation samples</h2>", _samples(results),
        "<h2>Reproduce</h2>", f"<pre>{html.escape(results['settings']['command'])}</pre>",
        "<h3>Settings</h3>", f"<pre>{html.escape(json.dumps(results['settings'], indent=1))}</pre>",
        f"<pre>{html.escape(json.dumps(results['environment'], indent=1))}</pre>",
    ]
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>polyformer compare</title>'
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    return write_atomic(path, page)
