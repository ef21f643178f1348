"""Option groups shared by `polyformer finetune`, `evaluate` and `predict` (not a verb of its own).

Each group (`polyformer.cli.options`) is defined once here, so the options' names, defaults and
help stay the same in every verb: the inference settings, the column names of data files, and
zero- / few-shot prompting.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import typer

from polyformer.cli.options import given, option
from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.tasks.base import TaskOptions
    from polyformer.tasks.prompting import PromptSettings

TASK_HELP = "classify | ner | pair | qa (default: the task the model was fine-tuned for)"
MODEL = typer.Option(..., "--model", help="Catalog name, HF / sentence-transformers / native folder, GGUF file, run "
                     "directory or hub id (org/name).")
MAX_LENGTH_HELP = "Tokens per input, specials included (default: the model's fine-tuning setting, else 128; QA 384)."
STRIDE_HELP = "qa: tokens shared by consecutive windows of a long context (default max_length // 3)."


@dataclass
class Inference:
    """How a task model reads its inputs (evaluate, predict)."""

    max_length: Optional[int] = option(None, "--max-length", help=MAX_LENGTH_HELP)
    batch_size: int = option(32, "--batch-size", help="Inference batch size.")
    device: str = option("auto", "--device", help="auto | cpu | cuda | cuda:N.")
    stride: Optional[int] = option(None, "--stride", help=STRIDE_HELP)


@dataclass
class TextColumns:
    """Where the texts are in a .jsonl / .csv file."""

    text: Optional[str] = option(None, "--text-column", help="Field / column of the text (default: text).")
    text_a: Optional[str] = option(None, "--text-a-column", help="Pairs: field of the first text (default: text_a).")
    text_b: Optional[str] = option(None, "--text-b-column", help="Pairs: field of the second text (default: text_b).")


@dataclass
class LabelColumns:
    """Where the labels are in a .jsonl / .csv file."""

    label: Optional[str] = option(None, "--label-column", help="Field / column of the label (default: label).")
    score: Optional[str] = option(None, "--score-column", help="Pairs: field of the similarity score (default: score).")


@dataclass
class Prompting:
    """Zero- / few-shot classification with a decoder's LM head (evaluate, predict)."""

    prompt: bool = option(False, "--prompt/--no-prompt",
                          help="classify: score each label's continuation with the LM head (zero-/few-shot).")
    shots: int = option(0, "--shots", help="--prompt: labelled examples from the train split put in the prompt "
                        "(0 = zero-shot).")
    verbalizer: Optional[list[str]] = option(None, "--verbalizer", help="--prompt: LABEL=WORDS, the continuation scored "
                                             "for a label (repeatable).")
    template: Optional[str] = option(None, "--template", help="--prompt: how one example reads, with {text} "
                                     "(default 'Text: {text}\\nLabel:').")
    instruction: Optional[str] = option(None, "--instruction", help="--prompt: text put before the examples.")
    calibrate: bool = option(False, "--calibrate/--no-calibrate", help="--prompt: predict with contextual calibration "
                             "(divide out the label prior of content-free texts).")
    seed: int = option(0, "--seed", help="--prompt: seed of the demonstrations' choice and order.")

    def settings(self, task: Optional[str]) -> PromptSettings:
        """The prompt settings; --prompt classifies, so any other --task with it is a mistake."""
        from polyformer.tasks.prompting import PromptSettings

        if task not in (None, "classify"):
            raise ConfigError(f"--prompt classifies with a decoder's LM head; it does not do --task {task} "
                              "(drop --prompt, or use --task classify)")
        return PromptSettings(shots=self.shots, verbalizers=verbalizers(self.verbalizer), template=self.template,
                              instruction=self.instruction, seed=self.seed, calibrate=self.calibrate)


def columns(texts: TextColumns, labels: LabelColumns | None = None) -> dict[str, str]:
    """The column overrides that were given, as Columns field names."""
    return {**given(texts), **(given(labels) if labels is not None else {})}


def task_options(inference: Inference, texts: TextColumns, labels: LabelColumns | None = None) -> TaskOptions:
    from polyformer.tasks import recipe

    return recipe.task_options(columns(texts, labels), max_length=inference.max_length, batch_size=inference.batch_size,
                               device=inference.device, stride=inference.stride)


def verbalizers(items: Optional[list[str]]) -> dict[str, str] | None:
    """`LABEL=WORDS` options as a mapping."""
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
