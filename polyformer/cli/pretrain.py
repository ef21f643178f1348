"""`polyformer pretrain`: train BERT (MLM+NSP), GPT (causal LM) or an encoder–decoder from scratch.

Options left unset keep the value from `--config run.yaml` (if given), then the defaults of
`PretrainSpec` / `TrainConfig`. `--set FIELD=VALUE` overrides any ModelConfig field.
Runs unchanged under `torchrun` (DDP; `--fsdp` for FSDP2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from polyformer.errors import ConfigError

# CLI option name → TrainConfig field, for options that go to the trainer
_TRAIN_OPTIONS = (
    "max_steps", "micro_batches", "lr", "min_lr", "warmup_steps", "schedule", "weight_decay",
    "grad_clip", "dtype", "compile", "fsdp", "eval_every", "eval_batches", "save_every",
    "keep_last", "log_every", "seed", "deterministic", "device", "progress",
)
_SPEC_OPTIONS = (
    "arch", "preset", "data", "text_field", "tokenizer", "vocab_size", "block_size", "batch_size",
    "nsp", "whole_word", "document_aware", "label_smoothing",
)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`hidden_size=64` style overrides; values parsed as YAML scalars (numbers, true/false, null)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set hidden_size=64")
        out[key.strip()] = yaml.safe_load(value)
    return out


def pretrain(
    arch: Optional[str] = typer.Option(None, help="encoder (MLM+NSP) | decoder (causal LM) | encoder-decoder (seq2seq)."),
    preset: Optional[str] = typer.Option(None, help="Model preset (bert-tiny, bert-mini, gpt-tiny, gpt2, llama-tiny, transformer-small, ...)."),
    data: Optional[list[str]] = typer.Option(None, "--data", help="Catalog name (shakespeare) or .txt/.jsonl/.csv files; repeatable."),
    text_field: Optional[str] = typer.Option(None, "--text-column", help="Text column/field of jsonl/csv files."),
    tokenizer: Optional[str] = typer.Option(None, help="char | bpe | wordpiece (trained on the train split) or a tokenizer path."),
    vocab_size: Optional[int] = typer.Option(None, help="Vocabulary size for a trained bpe/wordpiece tokenizer."),
    block_size: Optional[int] = typer.Option(None, help="Tokens per training row (context length)."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per micro-batch (global, split across ranks)."),
    nsp: Optional[bool] = typer.Option(None, "--nsp/--no-nsp", help="Encoders: add next-sentence prediction to MLM."),
    whole_word: Optional[bool] = typer.Option(None, "--whole-word/--no-whole-word", help="Encoders: whole-word masking."),
    document_aware: Optional[bool] = typer.Option(None, "--document-aware/--no-document-aware", help="Decoders: attend only within each packed document."),
    label_smoothing: Optional[float] = typer.Option(None, help="Encoder-decoders: label smoothing epsilon."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps."),
    micro_batches: Optional[int] = typer.Option(None, help="Gradient accumulation: micro-batches per step."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate."),
    min_lr: Optional[float] = typer.Option(None, help="Final learning rate of cosine/linear schedules."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warmup steps."),
    schedule: Optional[str] = typer.Option(None, help="cosine | linear | inverse_sqrt | constant."),
    weight_decay: Optional[float] = typer.Option(None, help="AdamW weight decay (not on biases, norms, embeddings)."),
    grad_clip: Optional[float] = typer.Option(None, help="Gradient-norm clipping (0 = off)."),
    dtype: Optional[str] = typer.Option(None, help="float32 | bfloat16 | float16 autocast."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    fsdp: Optional[bool] = typer.Option(None, "--fsdp/--no-fsdp", help="Shard with FSDP2 instead of DDP under torchrun."),
    eval_every: Optional[int] = typer.Option(None, help="Evaluate every N steps (0 = at the end)."),
    eval_batches: Optional[int] = typer.Option(None, help="Validation batches per evaluation."),
    save_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps (0 = at the end)."),
    keep_last: Optional[int] = typer.Option(None, help="Checkpoints kept (plus the best)."),
    log_every: Optional[int] = typer.Option(None, help="Log every N steps."),
    seed: Optional[int] = typer.Option(None, help="Seed of the initial weights, dropout and data order: the same seed repeats the run."),
    deterministic: Optional[bool] = typer.Option(None, "--deterministic/--no-deterministic", help="CUDA: deterministic kernels, so GPU runs repeat bit for bit (slower)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Show the progress bar."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a model field: --set hidden_size=64 (repeatable)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config (fields of `polyformer pretrain`); options override it."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory from its latest checkpoint."),
) -> None:
    """Pretrain a model from scratch on real text (BERT: MLM+NSP, GPT: causal LM, encoder-decoder: seq2seq)."""
    from polyformer.training import pretrain as recipe

    given = dict(locals())
    train = {name: given[name] for name in _TRAIN_OPTIONS if given[name] is not None}
    if resume is not None:
        history = recipe.resume(resume, **train)
        _report(history, resume)
        return
    if out is None:
        raise ConfigError("--out DIR is required: the run directory to create")
    base = recipe.read_spec(config).to_dict() if config is not None else {}
    fields = {name: given[name] for name in _SPEC_OPTIONS if given[name] is not None}
    spec_data = {**base, **fields}
    spec_data["train"] = {**base.get("train", {}), **train}
    spec_data["model"] = {**base.get("model", {}), **parse_assignments(set_ or [])}
    spec = recipe.PretrainSpec.from_dict(spec_data, str(config) if config else "command line")
    history = recipe.run(spec, out)
    _report(history, out)


def _report(history: list[dict], out: Path) -> None:
    last = history[-1] if history else {}
    summary = ", ".join(f"{key}={value:.4g}" for key, value in last.items() if isinstance(value, float))
    typer.echo(f"{out / 'model'}  ({summary})", err=True)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
