"""Options shared by `polyformer finetune`, `evaluate` and `predict` (not a verb of its own).

Typer reads options from function signatures; the shared ones are defined once here and used as
defaults in each verb, so their names and help stay the same everywhere.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

TASK_HELP = "classify | ner | pair | qa (default: the task the model was fine-tuned for)"
MODEL = typer.Option(..., "--model", help="Catalog name, HF / sentence-transformers / native folder, GGUF file, run directory or hub id (org/name).")
MAX_LENGTH = typer.Option(None, "--max-length", help="Tokens per input, specials included (default: the model's fine-tuning setting, else 128; QA 384).")
BATCH_SIZE = typer.Option(32, "--batch-size", help="Inference batch size.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")
STRIDE = typer.Option(None, "--stride", help="qa: tokens shared by consecutive windows of a long context (default max_length // 3).")
TEXT_COLUMN = typer.Option(None, "--text-column", help="Field / column of the text (default: text).")
TEXT_A_COLUMN = typer.Option(None, "--text-a-column", help="Pairs: field of the first text (default: text_a).")
TEXT_B_COLUMN = typer.Option(None, "--text-b-column", help="Pairs: field of the second text (default: text_b).")
LABEL_COLUMN = typer.Option(None, "--label-column", help="Field / column of the label (default: label).")
SCORE_COLUMN = typer.Option(None, "--score-column", help="Pairs: field of the similarity score (default: score).")
# zero- / few-shot classification with a decoder's LM head
PROMPT = typer.Option(False, "--prompt/--no-prompt", help="classify: score each label's continuation with the LM head (zero-/few-shot).")
SHOTS = typer.Option(0, "--shots", help="--prompt: labelled examples from the train split put in the prompt (0 = zero-shot).")
VERBALIZER = typer.Option(None, "--verbalizer", help="--prompt: LABEL=WORDS, the continuation scored for a label (repeatable).")
TEMPLATE = typer.Option(None, "--template", help="--prompt: how one example reads, with {text} (default 'Text: {text}\\nLabel:').")
INSTRUCTION = typer.Option(None, "--instruction", help="--prompt: text put before the examples.")
CALIBRATE = typer.Option(False, "--calibrate/--no-calibrate", help="--prompt: predict with contextual calibration (divide out the label prior of content-free texts).")


def prompted_task(task: Optional[str]) -> None:
    """--prompt classifies: any other --task with it is a mistake."""
    from polyformer.errors import ConfigError

    if task not in (None, "classify"):
        raise ConfigError(f"--prompt classifies with a decoder's LM head; it does not do --task {task} "
                          "(drop --prompt, or use --task classify)")


def columns(text: Optional[str], text_a: Optional[str], text_b: Optional[str], label: Optional[str],
            score: Optional[str]) -> dict[str, str]:
    """The column overrides that were given, as Columns field names."""
    given = {"text": text, "text_a": text_a, "text_b": text_b, "label": label, "score": score}
    return {name: value for name, value in given.items() if value is not None}


def verbalizers(items: Optional[list[str]]) -> dict[str, str] | None:
    """`LABEL=WORDS` options as a mapping."""
    from polyformer.errors import ConfigError

    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, words = item.partition("=")
        if not sep or not name.strip() or not words.strip():
            raise ConfigError(f"--verbalizer {item!r}: expected LABEL=WORDS, e.g. --verbalizer fresh=positive")
        out[name.strip()] = words.strip()
    return out


def echo_json(row: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()
