"""Which task a model is for, read from its head, so `evaluate` / `predict` need no `--task`.

A fine-tuned model's config names its head, its labels and, in `extra["task"]`, the task it was
fine-tuned for, so the task follows from the model:

| model                                      | task                                                 |
|--------------------------------------------|------------------------------------------------------|
| sequence-classification head               | `classify`, or `pair` when it was fine-tuned on pairs |
| token-classification head                  | `ner`                                                |
| question-answering head                    | `qa`                                                 |
| MLM head (`mlm`, `pretraining`)            | `fill-mask` (prediction only)                        |
| LM head fine-tuned for translate / lm      | `translate` / `lm` (from `extra["task"]`)            |

Only a model whose head fits several uses asks for `--task`: a decoder with an LM head
(classify by prompting, or generate text), an encoder–decoder, or a body without a task head.
The error is one line that lists the choices. `classify` asked for a model fine-tuned on pairs
means its `pair` recipe (the same head, read from two texts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.config import ModelConfig

HEAD_TASKS = {"sequence-classification": "classify", "token-classification": "ner", "question-answering": "qa",
              "mlm": "fill-mask", "pretraining": "fill-mask"}
TEXT_TO_TEXT = ("translate", "lm")  # LM-head tasks a fine-tuned model names in its config
VERB_TASKS = {"evaluate": ("classify", "ner", "pair", "qa", *TEXT_TO_TEXT),
              "predict": ("classify", "ner", "pair", "qa", "fill-mask", *TEXT_TO_TEXT)}
_FINETUNE = "fine-tune a task head (polyformer finetune --task classify|ner|pair|qa --model {where} --data DATA --out DIR)"


def infer_task(config: ModelConfig, where: str, verb: str = "predict") -> str:
    """The task of a model, from its head; ConfigError listing the choices when the head fits several."""
    task = HEAD_TASKS.get(config.head)
    if task == "classify" and config.extra.get("task") == "pair":
        task = "pair"
    if config.head == "lm" and config.extra.get("task") in TEXT_TO_TEXT:
        task = config.extra["task"]
    if task is not None and task in VERB_TASKS[verb]:
        return task
    raise ConfigError(f"{where}: {_ambiguity(config, verb)}; " + _choices(config, verb).format(where=where))


def task_for(requested: str | None, config: ModelConfig, where: str, verb: str = "predict") -> str:
    """The task to run: the one asked for (`classify` of a pair model is `pair`), else the model's own."""
    if requested is None:
        return infer_task(config, where, verb)
    if requested == "classify" and config.head == "sequence-classification" and config.extra.get("task") == "pair":
        return "pair"
    return requested


def _ambiguity(config: ModelConfig, verb: str) -> str:
    if config.head == "lm" and config.arch == "decoder":
        return "a decoder with an LM head fits more than one task, so --task is needed"
    if config.head == "lm":
        return f"an {config.arch} with an LM head generates text; it has no task head to read the task from"
    if HEAD_TASKS.get(config.head) == "fill-mask":
        return f"an MLM head predicts masked tokens (polyformer predict --task fill-mask), which {verb} cannot score"
    return f"head={config.head!r} is not a task head, so the task cannot be read from the model"


def _choices(config: ModelConfig, verb: str) -> str:
    if config.head == "lm" and config.arch == "decoder":
        return (f"choose --task classify --prompt (zero-/few-shot classification with the LM head), "
                f"polyformer generate --model {{where}} (text), or {_FINETUNE}")
    if config.head == "lm":
        return f"choose polyformer generate --model {{where}} (text), or {_FINETUNE}"
    return _FINETUNE
