"""Option groups shared by `polyformer finetune`, `evaluate` and `predict` (not a verb of its own).

Each group (`polyformer.cli.options`) is defined once here, so the options' names, defaults and
help stay the same in every verb: the inference settings, the column names of data files,
zero- / few-shot prompting, and how translate / lm decode.
"""

from __future__ import annotations

import dataclasses
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

TASK_HELP = "classify | ner | pair | qa | translate (alias seq2seq) | lm (default: the task the model was fine-tuned for)"
MODEL_HELP = "Catalog name, HF / sentence-transformers / native folder, GGUF file, run directory or hub id (org/name)."
MODEL = typer.Option(..., "--model", help=MODEL_HELP)
MAX_LENGTH_HELP = "Tokens per input, specials included (default: the model's fine-tuning setting, else 128; QA 384)."
STRIDE_HELP = "qa: tokens shared by consecutive windows of a long context (default max_length // 3)."
DIRECTION_HELP = "translate / lm: forward (source column → target column) | reverse; bible-en-es: en-es | es-en."
MAX_NEW_TOKENS_HELP = "translate / lm: tokens generated per input (default: --max-length)."


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
    source: Optional[str] = option(None, "--source-column", help="translate / lm: field of the source text (default: text_a).")


@dataclass
class LabelColumns:
    """Where the labels are in a .jsonl / .csv file."""

    label: Optional[str] = option(None, "--label-column", help="Field / column of the label (default: label).")
    score: Optional[str] = option(None, "--score-column", help="Pairs: field of the similarity score (default: score).")
    target: Optional[str] = option(None, "--target-column", help="translate / lm: field of the target text (default: text_b).")


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
    instruction: Optional[str] = option(None, "--instruction", help="--prompt: text put before the examples; translate / lm "
                                        "with a chat model: the request, with {text} (and {source} / {target}).")
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


    def request(self) -> str | None:
        """translate / lm: the --instruction, which asks for the output when it is not a --prompt's preamble."""
        return None if self.prompt else self.instruction


@dataclass
class Decoding:
    """How translate / lm decode their outputs (evaluate, predict)."""

    direction: str = option("forward", "--direction", help=DIRECTION_HELP)
    num_beams: int = option(4, "--num-beams", help="translate / lm: beam search width (1 = greedy).")
    length_penalty: float = option(1.0, "--length-penalty", help="translate / lm: beam scores are log-probability / "
                                   "length ** this.")
    max_new_tokens: Optional[int] = option(None, "--max-new-tokens", help=MAX_NEW_TOKENS_HELP)


def columns(texts: TextColumns, labels: LabelColumns | None = None) -> dict[str, str]:
    """The column overrides that were given, as Columns field names (--source / --target-column name text_a / text_b)."""
    chosen = {**given(texts), **(given(labels) if labels is not None else {})}
    for side, field in (("source", "text_a"), ("target", "text_b")):
        if side in chosen:
            chosen[field] = chosen.pop(side)
    return chosen


def task_options(inference: Inference, texts: TextColumns, labels: LabelColumns | None = None,
                 decoding: Decoding | None = None, prompting: Prompting | None = None) -> TaskOptions:
    """The TaskOptions the groups describe (translate / lm: the decoding and the chat request too)."""
    from polyformer.tasks import recipe

    text_to_text = dataclasses.asdict(decoding) if decoding is not None else {}
    return recipe.task_options(columns(texts, labels), max_length=inference.max_length, batch_size=inference.batch_size,
                               device=inference.device, stride=inference.stride, **text_to_text,
                               instruction=prompting.request() if prompting is not None else None)


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
