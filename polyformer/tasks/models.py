"""Models for the tasks: load any checkpoint with its tokenizer, give it a task head, check heads.

`load_pretrained` reads what `pf.load` reads — a Hugging Face or sentence-transformers folder, a
GGUF file, a native folder, a polyformer run directory (its `model/` folder holds the weights and
the tokenizer), a catalog name or a hub id — together with its tokenizer.

`with_head` gives a model a fresh task head on the same body, whatever its form and whatever head
it had (an LM, MLM, NSP or another task's): the body's weights are copied, the head starts from
its initialisation. How sequence heads pool (`classifier_pooling`) follows the form unless asked:
BERT-style encoders read [CLS] (through BERT's pooler when the checkpoint has one), decoders the
last real token (padding-side aware), encoder–decoders the decoder's last token. Token and span
heads read every token, so BERT's pooler is dropped for them (as in transformers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polyformer.config import POOLINGS
from polyformer.errors import ConfigError
from polyformer.io.loader import load
from polyformer.locations import resolve
from polyformer.models import PolyformerModel, with_fresh_head
from polyformer.tokenizers import Tokenizer, load_tokenizer

DEFAULT_POOLING = {"encoder": "cls", "decoder": "last", "encoder-decoder": "last"}
TASK_HEADS = ("sequence-classification", "token-classification", "question-answering")
_HEAD_TASKS = {"sequence-classification": "classify (or pair)", "token-classification": "ner", "question-answering": "qa"}


def load_pretrained(spec: str | Path) -> tuple[PolyformerModel, Tokenizer, Path]:
    """(model, tokenizer, where it was found) for a model spec."""
    location = resolve(spec)
    # building the model draws an initialisation that the stored weights then replace; forking
    # the generator keeps that out of the run's seeded stream, so a fresh head's weights do not
    # depend on which loader read the body
    with torch.random.fork_rng(devices=[]):
        model = load(location, dtype="float32")  # a GGUF file dequantized: task models train and swap heads
    return model, load_tokenizer(location), location


def with_head(
    model: PolyformerModel,
    head: str,
    labels: list[str] | None = None,
    num_labels: int | None = None,
    pooling: str | None = None,
    extra: dict[str, Any] | None = None,
) -> PolyformerModel:
    """The same body with a fresh `head` (sequence / token classification or QA spans)."""
    if head not in TASK_HEADS:
        raise ConfigError(f"head={head!r} is not one of {', '.join(TASK_HEADS)}")
    config = model.config
    chosen = pooling or DEFAULT_POOLING[config.arch]
    if chosen not in POOLINGS:
        raise ConfigError(f"pooling={chosen!r} is not one of {', '.join(POOLINGS)}")
    count = len(labels) if labels is not None else (num_labels or 2)
    keep_pooler = config.pooler and head == "sequence-classification"
    new_config = config.replace(
        head=head, num_labels=count if head != "question-answering" else config.num_labels,
        labels=labels if head != "question-answering" else None,
        classifier_pooling=chosen, pooler=keep_pooler, extra={**config.extra, **(extra or {})},
    )
    return with_fresh_head(model, new_config)


def require_head(model: PolyformerModel, head: str, where: str, prompt_hint: bool = False) -> None:
    """ConfigError telling how to get a model with `head` when `model` has another one."""
    if model.config.head == head:
        return
    if head == "lm":
        raise ConfigError(f"{where} has head={model.config.head!r}; text-to-text tasks generate with an LM head: give "
                          "a decoder or an encoder-decoder checkpoint (its LM head is kept when it is fine-tuned)")
    task = _HEAD_TASKS[head].split(" ")[0]
    hint = ""
    if prompt_hint and model.config.head == "lm":
        hint = "; or classify with this decoder's LM head by prompting: add --prompt (and --shots K)"
    raise ConfigError(
        f"{where} has head={model.config.head!r}, not a {head} head; fine-tune one first: "
        f"polyformer finetune --task {task} --model {where} --data DATA --out DIR{hint}"
    )
