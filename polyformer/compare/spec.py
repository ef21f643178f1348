"""What a comparison runs: `CompareSpec` (every field is an option of `polyformer compare`).

Two modes: from scratch (no `models`: an encoder, a decoder and an encoder–decoder pretrained on
`data` for `budget_tokens` tokens each, with one shared tokenizer and matched sizes) and pretrained
(`models`: existing checkpoints, each with its own tokenizer). Either way every model then runs
the same suite of tasks, one recipe per task, the same budget for all, once per seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from polyformer.compare.matching import MATCHES, size_named
from polyformer.config import dataclass_from_dict
from polyformer.errors import ConfigError

TASKS = ("classify", "ner", "pair", "translate", "perplexity", "generate", "embed", "zero-shot")
# the data each task reads unless `task_data` names another file
DEFAULT_TASK_DATA = {
    "classify": "rotten_tomatoes", "ner": "wnut16", "pair": "shakespeare", "translate": "bible-en-es",
    "embed": "builtin", "contrastive": "shakespeare-continuation", "zero-shot": "rotten_tomatoes",
}
DATA_KEYS = tuple(DEFAULT_TASK_DATA)
SCRATCH_ARCHS = ("encoder", "decoder", "encoder-decoder")
PROMPT = "To be, or not to be, that is the question:"
ATTENTION_TEXT = "The quality of mercy is not strained."
ATTENTION_TARGET = "It droppeth as the gentle rain from heaven."


@dataclass
class CompareSpec:
    """A comparison; saved as OUT/compare.yaml and checked when a killed run is started again."""

    data: list[str] = field(default_factory=lambda: ["shakespeare"])  # pretraining corpus (from scratch)
    models: list[str] = field(default_factory=list)  # pretrained mode: existing checkpoints
    budget_tokens: int = 250_000  # pretraining tokens per model
    size: str = "tiny"
    match: str = "params"
    seeds: int = 3
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    vocab_size: int = 5000
    block_size: int = 128
    batch_size: int = 16
    lr: float = 1e-3  # pretraining peak learning rate (cosine, warmup 5%)
    finetune_steps: int = 50
    finetune_batch_size: int = 16
    finetune_lr: float | None = None  # default: 5e-4 from scratch, 5e-5 for pretrained models
    max_length: int = 128  # tokens per fine-tuning input
    contrastive_steps: int = 20
    eval_limit: int = 300  # test examples per task (translation: a fifth; embeddings: see embedding.eval_sets)
    max_new_tokens: int = 40  # generation samples and translations
    prompt: str = PROMPT
    attention_text: str = ATTENTION_TEXT
    attention_target: str = ATTENTION_TARGET
    task_data: dict[str, str] = field(default_factory=dict)  # task → a file instead of its built-in data
    save_every: int = 100  # pretraining checkpoints (what a killed run resumes from)
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"--tasks: unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
        if not self.tasks:
            raise ConfigError(f"--tasks: give at least one of {', '.join(TASKS)}")
        self.tasks = [task for task in TASKS if task in self.tasks]  # one order everywhere
        wrong = sorted(set(self.task_data) - set(DATA_KEYS))
        if wrong:
            raise ConfigError(f"--task-data: unknown key(s) {', '.join(wrong)}; known: {', '.join(DATA_KEYS)}")
        if self.match not in MATCHES:
            raise ConfigError(f"--match {self.match!r} is not one of {', '.join(MATCHES)}")
        size_named(self.size)
        for name in ("budget_tokens", "seeds", "vocab_size", "block_size", "batch_size", "finetune_steps",
                     "finetune_batch_size", "contrastive_steps", "eval_limit", "max_new_tokens", "save_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("--models: each model once")

    @property
    def scratch(self) -> bool:
        return not self.models

    @property
    def mode(self) -> str:
        return "scratch" if self.scratch else "pretrained"

    def data_for(self, key: str) -> str:
        return self.task_data.get(key, DEFAULT_TASK_DATA[key])

    def finetune_rate(self) -> float:
        return self.finetune_lr if self.finetune_lr is not None else (5e-4 if self.scratch else 5e-5)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "CompareSpec":
        return dataclass_from_dict(cls, data, source)


@dataclass(frozen=True)
class ModelEntry:
    """One compared model: its name in the tables, its form and head, and where its weights are."""

    name: str
    arch: str
    head: str
    path: str  # a model folder with its tokenizer, a catalog name or a GGUF file

    @property
    def generates(self) -> bool:
        return self.arch != "encoder" and self.head == "lm"
