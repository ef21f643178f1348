"""Fine-tune, evaluate and predict with any task recipe — what the CLI verbs and pipelines call.

    result = finetune(FinetuneSpec(task="classify", model="all-MiniLM-L6-v2", data="rotten_tomatoes", out="runs/rt"))
    evaluation = evaluate("classify", "runs/rt", "rotten_tomatoes", split="test")
    rows = predict("classify", "runs/rt", ["A gripping thriller.", "A dull comedy."])

Fine-tuning is the one trainer (`polyformer.training.Trainer`) with the task's objective, an
`ExampleSource` over the encoded train split and, as its `evaluate` hook, the task's own metric
on the dev split: the best checkpoint is the one with the best dev metric (accuracy, entity F1,
Spearman, SQuAD F1), and training stops early after `patience` evaluations without improvement.
Learning rate: linear warmup over `warmup_ratio` of the steps, then linear decay (BERT's
recipe); AdamW with betas (0.9, 0.999) and decoupled weight decay (not on biases, norms and
embeddings).

The run directory holds the trainer's files (run.yaml, metrics.csv, plot.png, checkpoints/)
plus `finetune.yaml` (this spec), `dev_metrics.json` (the best evaluation) and `model/`: the best
weights as a native folder with the tokenizer beside them, labels in its config (`labels`) and
the task settings in `extra` (`task` among them: what `evaluate` / `predict` run when no task is
named) — `pf.load(RUN_DIR)`; `polyformer convert RUN_DIR d --to hf` for transformers' pipelines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polyformer.config import dataclass_from_dict
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel
from polyformer.runtime import DTypeName, resolve_device
from polyformer.tasks.base import Evaluation, Task, TaskOptions, report_truncation
from polyformer.tasks.batches import ExampleSource
from polyformer.tasks.datasets import Columns
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.tasks.inference import task_for
from polyformer.tasks.models import load_pretrained, require_head, with_head
from polyformer.tasks.runs import SPEC_FILE, FinetuneResult, finish_run, start_run, train_and_dev, train_config
from polyformer.training.checkpoint import seed_everything
from polyformer.training.trainer import Trainer

if TYPE_CHECKING:
    from polyformer.tokenizers import Tokenizer

TASK_NAMES = ("classify", "ner", "pair", "qa", "translate", "lm")
TASK_ALIASES = {"seq2seq": "translate"}
PREDICT_CHUNK = 256  # inputs per prediction round, so output streams for long inputs


def get_task(name: str) -> Task:
    """The recipe of a task name (or alias)."""
    name = TASK_ALIASES.get(name, name)
    if name in ("translate", "lm"):
        from polyformer.tasks.translate import LM, TRANSLATE

        return TRANSLATE if name == "translate" else LM  # type: ignore[return-value]
    if name == "classify":
        from polyformer.tasks.classify import CLASSIFY as task
    elif name == "pair":
        from polyformer.tasks.pair import PAIR as task
    elif name == "ner":
        from polyformer.tasks.ner import NER as task
    elif name == "qa":
        from polyformer.tasks.qa import QA as task
    else:
        raise ConfigError(f"task={name!r} is not one of {', '.join(TASK_NAMES)}, seq2seq (fill-mask needs no fine-tuning: "
                          "polyformer predict --task fill-mask)")
    return task  # type: ignore[return-value]


@dataclass
class FinetuneSpec:
    """A fine-tuning run; every field is an option of `polyformer finetune` (and a YAML key)."""

    task: str
    data: str
    out: str
    model: str | None = None  # the checkpoint to fine-tune; translate can start from `preset` instead
    dev_data: str | None = None  # a dev file (then all of `data` trains); default: the splits of `data`
    pooling: str | None = None  # sequence heads: cls | mean | max | last (default by architecture)
    max_length: int | None = None  # tokens per input; default: the task's (128, QA 384, text to text 256)
    batch_size: int = 32
    micro_batches: int = 1
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs
    lr: float | None = None  # default 5e-5; from scratch d_model ** -0.5 * warmup ** -0.5 (the original Transformer)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_every: int | None = None  # default: once per epoch
    patience: int | None = 3  # evaluations without improvement before stopping; None: never stop early
    dev_limit: int | None = None  # evaluate on the first N dev examples only (quick runs)
    seed: int = 0
    deterministic: bool = False  # CUDA: deterministic kernels (TrainConfig.deterministic)
    device: str = "auto"
    dtype: DTypeName = "float32"  # autocast: runtime.AUTOCAST_DTYPES
    regression: bool | None = None
    stride: int | None = None  # qa: default max_length // 3
    columns: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    # text to text (translate, lm)
    preset: str | None = None  # train from scratch: a model preset (transformer-small, gpt-tiny, ...)
    model_config: dict[str, Any] = field(default_factory=dict)  # from scratch: ModelConfig overrides
    tokenizer: str | None = None  # from scratch: reuse this tokenizer (default: a BPE trained on both sides)
    vocab_size: int = 8000  # from scratch: size of the trained BPE
    schedule: str | None = None  # default: linear; from scratch inverse_sqrt
    warmup_steps: int | None = None  # overrides warmup_ratio
    label_smoothing: float = 0.1
    direction: str = "forward"  # forward | reverse (bible-en-es: en-es | es-en)
    pair_format: str | None = None  # decoders: separator | chat (default: chat when the tokenizer has a template)
    instruction: str | None = None  # chat layout: the request around {text}
    eval_beams: int = 1  # decoding of the dev evaluations during training (1: greedy, faster)
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        task = get_task(self.task)
        self.task = task.name  # aliases (seq2seq) are stored as the task they name
        for name in ("batch_size", "micro_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.model is not None and self.preset is not None:
            raise ConfigError("give --model (a checkpoint to fine-tune) or --preset (train from scratch), not both")
        if self.preset is not None and not getattr(task, "from_scratch", False):
            raise ConfigError(f"--preset trains from scratch, which task {task.name!r} does not; give --model")
        if self.model is None and self.preset is None:
            raise ConfigError("give --model, the checkpoint to fine-tune (translate also trains from scratch with --preset)")

    def options(self) -> TaskOptions:
        return task_options(self.columns, max_length=self.max_length, batch_size=self.batch_size,
                            regression=self.regression, stride=self.stride, device=self.device,
                            direction=self.direction, max_new_tokens=self.max_new_tokens,
                            instruction=self.instruction)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "FinetuneSpec":
        return dataclass_from_dict(cls, data, source)


def task_options(columns: dict[str, str] | None = None, **settings: Any) -> TaskOptions:
    """TaskOptions with the column names given as a mapping (unknown names are an error)."""
    try:
        cols = Columns(**(columns or {}))
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(Columns))
        raise ConfigError(f"columns: unknown field in {sorted(columns or {})}; known: {known}") from None
    return TaskOptions(columns=cols, **settings)


def max_length_for(task: Task, model: PolyformerModel, requested: int | None) -> int:
    """Tokens per input: the request, else the model's fine-tuning setting or the task default; within positions."""
    length = requested or model.config.extra.get("max_length") or task.default_max_length
    return min(int(length), model.config.max_positions)


# ---- fine-tuning ------------------------------------------------------------------------------
def finetune(spec: FinetuneSpec) -> FinetuneResult:
    """Fine-tune `spec.model` on `spec.data` for `spec.task`; the best dev weights end in OUT/model."""
    task, options, out = get_task(spec.task), spec.options(), Path(spec.out)
    if (out / SPEC_FILE).exists():
        raise ConfigError(f"{out}: already holds a fine-tuning run; choose another --out")
    seed_everything(spec.seed)  # first: the fresh head, dropout and data order come from the run's seed
    if getattr(task, "generative", False):
        from polyformer.tasks.generative import finetune_text_to_text

        return finetune_text_to_text(task, spec)
    model, tokenizer, _ = load_pretrained(spec.model)
    train, dev = train_and_dev(task, spec, options)
    max_length = max_length_for(task, model, spec.max_length)
    settings = task.head_settings(train, options)
    settings["extra"] = {**settings.get("extra", {}), "task": spec.task, "max_length": max_length}
    model = with_head(model, task.head(options), pooling=spec.pooling, **settings)
    task.check(dev, model, f"the training data ({spec.data})")
    encoder = TaskTokenizer(tokenizer, max_length)
    features, cut = task.features(train, encoder, model, options)
    report_truncation(cut, len(train), max_length, "training inputs")
    source = ExampleSource(features, spec.batch_size, spec.seed, encoder.pad_id, model.config.arch, spec.micro_batches)
    config = train_config(spec, source.steps_per_epoch(), task.best_metric(model))

    def on_dev(current: PolyformerModel) -> dict[str, float]:
        return task.evaluate(current, encoder, dev, options).metrics

    trainer = Trainer(model, task.objective(model), source, config, evaluate=on_dev, run_info=start_run(spec))
    return finish_run(spec, trainer, tokenizer)


# ---- evaluation and prediction ----------------------------------------------------------------
def load_for_task(task_name: str | None, model: str | Path | PolyformerModel, tokenizer: Tokenizer | None,
                  options: TaskOptions, verb: str = "predict") -> tuple[Task, PolyformerModel, TaskTokenizer]:
    """The recipe (the one named, else the model's own), the model with its head, and the tokenizer that feeds it."""
    if task_name is not None:
        get_task(task_name)  # a wrong name fails before the model is loaded
    loaded, tokenizer, where = loaded_model(model, tokenizer)
    task = get_task(task_for(task_name, loaded.config, where, verb))
    return task, *for_task(task, loaded, tokenizer, where, options)


def loaded_model(model: str | Path | PolyformerModel, tokenizer: Tokenizer | None) -> tuple[PolyformerModel, Tokenizer, str]:
    """(model, tokenizer, how to name it in messages) for a model spec, or for a model object with its tokenizer."""
    if isinstance(model, PolyformerModel):
        if tokenizer is None:
            raise ConfigError("pass the tokenizer with a model object (tokenizer=pf.load_tokenizer(path))")
        return model, tokenizer, "the model"
    loaded, found, _ = load_pretrained(model)
    return loaded, tokenizer or found, str(model)


def for_task(task: Task, model: PolyformerModel, tokenizer: Tokenizer, where: str,
             options: TaskOptions) -> tuple[PolyformerModel, TaskTokenizer]:
    """The model on its inference device, checked to have the task's head; clear errors otherwise."""
    require_head(model, task.head(options, model), where, prompt_hint=task.name == "classify")
    model = model.to(inference_device(options.device)).eval()
    return model, TaskTokenizer(tokenizer, max_length_for(task, model, options.max_length))


def inference_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU (`polyformer.runtime.resolve_device`)."""
    return resolve_device(device)


def default_split(task: Task, data: str) -> str:
    """Built-in data is evaluated on its test split; a user's file is used whole."""
    return "test" if data == task.builtin else "all"


def evaluate(task_name: str | None, model: str | Path | PolyformerModel, data: str, split: str | None = None,
             options: TaskOptions | None = None, tokenizer: Tokenizer | None = None,
             limit: int | None = None) -> Evaluation:
    """Metrics of a fine-tuned model on a split of labelled data (unknown labels are an error).

    `task_name=None` evaluates the task the model was fine-tuned for (`polyformer.tasks.inference`);
    `limit` keeps the first N examples of the split.
    """
    options = options or TaskOptions()
    task, loaded, encoder = load_for_task(task_name, model, tokenizer, options, verb="evaluate")
    options = with_data(task, data, options)
    examples = task.load(data, split or default_split(task, data), options)[:limit]
    task.check(examples, loaded, f"the model ({model if not isinstance(model, PolyformerModel) else 'given'})")
    result = task.evaluate(loaded, encoder, examples, options)
    result.task = task.name
    return result


def with_data(task: Task, data: str | None, options: TaskOptions) -> TaskOptions:
    """Options completed from what the data says (text to text: the languages of built-in pairs)."""
    fill = getattr(task, "options_for", None)  # only the text-to-text recipes have settings that come from data
    return fill(data, options) if fill is not None else options


def located(items: Iterable[Any], source: str = "input") -> Iterator[tuple[str, Any]]:
    """(where, item) for raw inputs given in Python: `input[0]`, `input[1]`, ..."""
    return ((f"{source}[{index}]", item) for index, item in enumerate(items))


def predict(task_name: str | None, model: str | Path | PolyformerModel, inputs: Iterable[Any],
            options: TaskOptions | None = None, tokenizer: Tokenizer | None = None,
            top_k: int = 5) -> Iterator[dict[str, Any]]:
    """Predictions for each input (strings or records), streamed in chunks.

    `task_name=None` runs the model's own task (`polyformer.tasks.inference`), fill-mask included
    (`top_k` tokens per mask).
    """
    yield from predict_located(task_name, model, located(inputs), options, tokenizer, top_k)


def predict_located(task_name: str | None, model: str | Path | PolyformerModel, inputs: Iterable[tuple[str, Any]],
                    options: TaskOptions | None = None, tokenizer: Tokenizer | None = None,
                    top_k: int = 5) -> Iterator[dict[str, Any]]:
    """`predict` for (where, raw item) inputs, as `polyformer.tasks.datasets.read_inputs` gives them."""
    options = options or TaskOptions()
    if task_name not in (None, "fill-mask"):
        get_task(task_name)  # a wrong name fails before the model is loaded
    loaded, tokenizer, where = loaded_model(model, tokenizer)
    name = task_for(task_name, loaded.config, where, "predict")
    if name == "fill-mask":
        from polyformer.tasks.classify import CLASSIFY
        from polyformer.tasks.fill_mask import fill_mask_rows

        texts = (CLASSIFY.parse_input(item, at, options).text for at, item in inputs)
        yield from fill_mask_rows(loaded.to(inference_device(options.device)).eval(), tokenizer, texts, top_k)
        return
    task = get_task(name)
    ready, encoder = for_task(task, loaded, tokenizer, where, options)
    yield from predict_with(task, ready, encoder, inputs, options)


def predict_with(task: Task, model: PolyformerModel, encoder: TaskTokenizer, inputs: Iterable[tuple[str, Any]],
                 options: TaskOptions) -> Iterator[dict[str, Any]]:
    """Predictions of a loaded model for (where, raw item) inputs, PREDICT_CHUNK at a time."""
    chunk: list[Any] = []
    for where, item in inputs:
        chunk.append(task.parse_input(item, where, options))
        if len(chunk) == PREDICT_CHUNK:
            yield from task.predict(model, encoder, chunk, options)
            chunk = []
    if chunk:
        yield from task.predict(model, encoder, chunk, options)
