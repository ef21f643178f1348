"""`polyformer compare`: BERT vs GPT vs the encoder–decoder on the same data, tokenizer and budget.

    polyformer compare --data shakespeare --budget-tokens 250000 --size tiny --seeds 3 --out runs/compare
    polyformer compare --models all-MiniLM-L6-v2 SmolLM2-135M-Instruct --tasks classify,embed --out runs/pretrained

From scratch (no --models) it pretrains the three forms with one tokenizer and matched sizes
(`--match params | flops`); with --models it runs the same suite on existing checkpoints. Prints
the table to stderr and writes OUT/compare.json, compare.md and report.html. Started again with
the same command, it continues a killed run where it stopped. See polyformer/compare/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from polyformer.cli.options import given, grouped, option
from polyformer.errors import ConfigError


def _task_data(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--task-data {item!r}: expected TASK=FILE, e.g. --task-data classify=reviews.jsonl")
        out[key.strip()] = value.strip()
    return out


def _tasks(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


@dataclass
class Comparison:
    """CompareSpec fields given as options (unset: the spec's defaults)."""

    budget_tokens: Optional[int] = option(None, "--budget-tokens", min=1, help="Pretraining tokens per model.")
    size: Optional[str] = option(None, "--size", help="tiny | mini | small | base: width, heads and layers shared by the three.")
    match: Optional[str] = option(None, "--match", help="params (same non-embedding parameters) | flops (same FLOPs per "
                                  "token; T5's L+L encoder-decoder).")
    seeds: Optional[int] = option(None, "--seeds", min=1, help="Seeds 0..N-1 per (model, task): mean ± std.")
    vocab_size: Optional[int] = option(None, "--vocab-size", min=16, help="From scratch: size of the shared WordPiece vocabulary.")
    block_size: Optional[int] = option(None, "--block-size", min=8, help="Pretraining context (tokens per row).")
    batch_size: Optional[int] = option(None, "--batch-size", min=1, help="Pretraining rows per step (encoder-decoder: as "
                                       "many tokens).")
    lr: Optional[float] = option(None, "--lr", help="Pretraining peak learning rate.")
    finetune_steps: Optional[int] = option(None, "--finetune-steps", min=1, help="Fine-tuning steps of every task and model.")
    finetune_batch_size: Optional[int] = option(None, "--finetune-batch-size", min=1, help="Fine-tuning batch size.")
    finetune_lr: Optional[float] = option(None, "--finetune-lr", help="Fine-tuning learning rate (default 5e-4 from "
                                          "scratch, 5e-5 pretrained).")
    max_length: Optional[int] = option(None, "--max-length", min=8, help="Tokens per fine-tuning input.")
    contrastive_steps: Optional[int] = option(None, "--contrastive-steps", min=1, help="Steps of the contrastive stage (embed).")
    eval_limit: Optional[int] = option(None, "--eval-limit", min=1, help="Test examples per task (translation: a fifth).")
    max_new_tokens: Optional[int] = option(None, "--max-new-tokens", min=1, help="Tokens of a generation sample.")
    prompt: Optional[str] = option(None, "--prompt", help="The fixed prompt of the generation samples.")
    save_every: Optional[int] = option(None, "--save-every", min=1, help="Pretraining checkpoint interval (what a killed "
                                       "run resumes from).")
    device: Optional[str] = option(None, "--device", help="auto | cpu | cuda | cuda:N.")


def compare(
    more_models: Optional[list[str]] = typer.Argument(None, hidden=True, help="More --models (space-separated after --models)."),
    data: Optional[list[str]] = typer.Option(None, "--data", help="From scratch: the pretraining corpus (catalog name or "
                                             ".txt/.jsonl files; repeatable)."),
    models: Optional[list[str]] = typer.Option(None, "--models", help="Compare these existing models instead (catalog "
                                               "names, folders, GGUF files)."),
    tasks: Optional[list[str]] = typer.Option(None, "--tasks", help="Subset of classify,ner,pair,translate,perplexity,"
                                              "generate,embed,zero-shot (comma-separated or repeated)."),
    task_data: Optional[list[str]] = typer.Option(None, "--task-data", help="TASK=FILE: a task's data instead of its "
                                                  "built-in set (classify, ner, pair, translate, embed, contrastive, "
                                                  "zero-shot)."),
    settings: Comparison = Comparison(),
    out: Path = typer.Option(..., "--out", help="Output folder (sub-runs, compare.json, compare.md, report.html)."),
) -> None:
    """Compare encoder, decoder and encoder-decoder models on one suite: a table, compare.json and report.html."""
    from polyformer.compare.spec import CompareSpec
    from polyformer.compare.suite import run_compare

    if more_models and not models:
        raise ConfigError(f"unexpected argument {more_models[0]!r}; models to compare follow --models")
    fields = given(settings)
    if data:
        fields["data"] = list(data)
    if models:
        if data:
            raise ConfigError("give --data (pretrain the three forms from scratch) or --models (compare existing ones), not both")
        fields["models"] = [*models, *(more_models or [])]
    if _tasks(tasks):
        fields["tasks"] = _tasks(tasks)
    if task_data:
        fields["task_data"] = _task_data(task_data)
    run_compare(CompareSpec.from_dict(fields, "command line"), out)


def register(app: typer.Typer) -> None:
    app.command("compare")(grouped(compare))
