"""`polyformer pretrain`: train BERT (MLM+NSP), GPT (causal LM) or an encoder–decoder, from scratch or `--init MODEL`.

Options left unset keep the value from `--config run.yaml` (if given), then the defaults of
`PretrainSpec` / `TrainConfig`. `--set FIELD=VALUE` overrides any ModelConfig field.
Runs unchanged under `torchrun` (DDP; `--fsdp` for FSDP2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from polyformer.cli.options import given, grouped, option
from polyformer.cli.training_options import Optimization, RunControls
from polyformer.errors import ConfigError


@dataclass
class Corpus:
    """What to train on and how it is cut: PretrainSpec fields (unset: the config file's, then the defaults)."""

    arch: Optional[str] = option(None, "--arch", help="encoder (MLM+NSP) | decoder (causal LM) | encoder-decoder (seq2seq); "
                                 "with --init, the checkpoint's.")
    init: Optional[str] = option(None, "--init", help="Continue from real weights (catalog name, folder, GGUF) with their "
                                 "own tokenizer.")
    preset: Optional[str] = option(None, "--preset", help="Model preset (bert-tiny, bert-mini, gpt-tiny, gpt2, llama-tiny, "
                                   "transformer-small, ...).")
    data: Optional[list[str]] = option(None, "--data", help="Catalog name (shakespeare) or .txt/.jsonl/.csv files; repeatable.")
    text_field: Optional[str] = option(None, "--text-column", help="Text column/field of jsonl/csv files.")
    tokenizer: Optional[str] = option(None, "--tokenizer", help="char | bpe | wordpiece (trained on the train split) or a "
                                      "tokenizer path.")
    vocab_size: Optional[int] = option(None, "--vocab-size", help="Vocabulary size for a trained bpe/wordpiece tokenizer.")
    block_size: Optional[int] = option(None, "--block-size", help="Tokens per training row (context length).")
    batch_size: Optional[int] = option(None, "--batch-size", help="Rows per micro-batch (global, split across ranks).")
    nsp: Optional[bool] = option(None, "--nsp/--no-nsp", help="Encoders: add next-sentence prediction to MLM.")
    whole_word: Optional[bool] = option(None, "--whole-word/--no-whole-word", help="Encoders: whole-word masking.")
    document_aware: Optional[bool] = option(None, "--document-aware/--no-document-aware",
                                            help="Decoders: attend only within each packed document.")
    label_smoothing: Optional[float] = option(None, "--label-smoothing", help="Encoder-decoders: label smoothing epsilon.")


@dataclass
class Training:
    """How to train: TrainConfig fields (unset: the config file's, then the defaults; a resumed run's own)."""

    min_lr: Optional[float] = option(None, "--min-lr", help="Final learning rate of cosine/linear schedules.")
    grad_clip: Optional[float] = option(None, "--grad-clip", help="Gradient-norm clipping (0 = off).")
    compile: Optional[bool] = option(None, "--compile/--no-compile", help="torch.compile the model.")
    fsdp: Optional[bool] = option(None, "--fsdp/--no-fsdp", help="Shard with FSDP2 instead of DDP under torchrun.")
    eval_batches: Optional[int] = option(None, "--eval-batches", help="Validation batches per evaluation.")
    save_every: Optional[int] = option(None, "--save-every", help="Checkpoint every N steps (0 = at the end).")
    keep_last: Optional[int] = option(None, "--keep-last", help="Checkpoints kept (plus the best).")
    log_every: Optional[int] = option(None, "--log-every", help="Log every N steps.")


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
    corpus: Corpus = Corpus(),
    optimization: Optimization = Optimization(),
    training: Training = Training(),
    controls: RunControls = RunControls(),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a model field: --set hidden_size=64 (repeatable)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config (fields of `polyformer pretrain`); options override it."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory from its latest checkpoint."),
) -> None:
    """Pretrain a model on real text (BERT: MLM+NSP, GPT: causal LM, encoder-decoder: seq2seq), from scratch or --init."""
    from polyformer.config import dataclass_from_yaml
    from polyformer.training import pretrain as recipe

    train = {**given(optimization), **given(training), **given(controls)}
    if resume is not None:
        history = recipe.resume(resume, **train)
        _report(history, resume)
        return
    if out is None:
        raise ConfigError("--out DIR is required: the run directory to create")
    base = dataclass_from_yaml(recipe.PretrainSpec, config).to_dict() if config is not None else {}
    spec_data = {**base, **given(corpus)}
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
    app.command("pretrain")(grouped(pretrain))
