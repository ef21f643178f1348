"""`pf.pipeline(task, model, **kw)`: one call from a model to predictions, as in transformers.

    clf = pf.pipeline("sentiment-analysis", "runs/minilm-rt")        # a fine-tuned run, folder or catalog name
    clf("A gripping thriller.")        # {'label': 'fresh', 'score': 0.97, 'scores': {...}, 'truncated': False}
    ner = pf.pipeline("ner", "runs/minilm-wnut16")
    ner("Obama visited Paris")         # {'text': ..., 'entities': [{'entity': 'person', 'start': 0, 'end': 5, ...}]}
    qa = pf.pipeline("question-answering", "runs/qa")
    qa(question="Who is the sun?", context="It is the east, and Juliet is the sun!")
    mt = pf.pipeline("translation", "runs/bible-mt")
    mt("In the beginning God created the heavens.")   # {'source': ..., 'translation_text': 'En el principio ...', ...}
    zs = pf.pipeline("zero-shot-classification", "SmolLM2-135M-Instruct")
    zs("A dull, lifeless comedy.", candidate_labels=["positive", "negative"])

Tasks (aliases in brackets): text-classification [sentiment-analysis] — a fine-tuned classify or
pair model (pairs as `(a, b)` or `{"text": a, "text_pair": b}`); token-classification [ner];
question-answering; translation (an encoder–decoder or decoder: `{'source', 'translation_text',
'truncated'}` per input, beam search with `num_beams=4`); fill-mask; zero-shot-classification (prompting a decoder's LM head, see
`polyformer.tasks.prompting`; `examples=[(text, label), ...]` makes it few-shot, `calibrate=True`
divides out the label prior);
feature-extraction and sentence-similarity (`pf.SentenceEncoder`); text-generation
(`polyformer.generation.text_pipeline.TextGenerationPipeline`, imported when asked for).

Each pipeline takes one input (→ one result) or a list (→ a list). `model` is anything
`pf.load` reads, or a loaded model together with `tokenizer=`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from polyformer.errors import ConfigError

TEXT_GENERATION = "polyformer.generation.text_pipeline:TextGenerationPipeline"
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
TASK_RECIPES = {"text-classification": "classify", "token-classification": "ner", "question-answering": "qa",
                "translation": "translate"}
TASKS = (*TASK_RECIPES, "fill-mask", "zero-shot-classification", "feature-extraction", "sentence-similarity",
         "text-generation", *ALIASES)


def _model_and_tokenizer(model: Any, tokenizer: Any):
    from polyformer.models import PolyformerModel
    from polyformer.tasks.models import load_pretrained

    if isinstance(model, PolyformerModel):
        if tokenizer is None:
            raise ConfigError("pass tokenizer= with a model object (e.g. tokenizer=pf.load_tokenizer(path))")
        return model, tokenizer
    loaded, loaded_tokenizer, _ = load_pretrained(model)
    return loaded, tokenizer or loaded_tokenizer


def _one_or_many(inputs: Any, run) -> Any:
    """Run on a list and return a list; run on one input and return its result."""
    if isinstance(inputs, list):
        return run(inputs)
    return run([inputs])[0]


class TaskPipeline:
    """Inference with a fine-tuned task model (classify / pair, ner, qa)."""

    def __init__(self, task: str, model: Any, tokenizer: Any = None, device: str = "auto", **settings: Any) -> None:
        from polyformer.tasks.recipe import load_for_task, task_options

        model, tokenizer = _model_and_tokenizer(model, tokenizer)
        self.options = task_options(settings.pop("columns", None), device=device, **settings)
        self.task, self.model, self.encoder = load_for_task(task, model, tokenizer, self.options)

    def _parse(self, item: Any, index: int) -> Any:
        if self.task.name == "pair":
            if isinstance(item, (tuple, list)) and len(item) == 2:
                item = {"text_a": item[0], "text_b": item[1]}
            elif isinstance(item, dict) and "text_pair" in item:
                item = {"text_a": item.get("text"), "text_b": item["text_pair"]}
        return self.task.parse_input(item, f"input[{index}]", self.options)

    def __call__(self, inputs: Any = None, **fields: Any) -> Any:
        if inputs is None:
            inputs = fields  # qa(question=..., context=...)
        return _one_or_many(inputs, lambda items: self.task.predict(
            self.model, self.encoder, [self._parse(item, i) for i, item in enumerate(items)], self.options))


class FillMaskPipeline:
    def __init__(self, model: Any, tokenizer: Any = None, device: str = "auto", top_k: int = 5) -> None:
        from polyformer.tasks.recipe import inference_device

        model, self.tokenizer = _model_and_tokenizer(model, tokenizer)
        self.model, self.top_k = model.to(inference_device(device)).eval(), top_k

    def __call__(self, inputs: str | list[str], top_k: int | None = None) -> Any:
        from polyformer.tasks.fill_mask import fill_mask_rows

        return _one_or_many(inputs, lambda texts: list(fill_mask_rows(self.model, self.tokenizer, texts, top_k or self.top_k)))


class ZeroShotPipeline:
    """Classification by prompting a decoder: the labels are given per call."""

    def __init__(self, model: Any, tokenizer: Any = None, device: str = "auto", template: str | None = None,
                 instruction: str | None = None, examples: Sequence[tuple[str, str]] = (), batch_size: int = 16,
                 calibrate: bool = False) -> None:
        from polyformer.tasks.recipe import inference_device

        model, tokenizer = _model_and_tokenizer(model, tokenizer)
        self.model, self.tokenizer = model.to(inference_device(device)), tokenizer
        self.template, self.instruction, self.batch_size, self.calibrate = template, instruction, batch_size, calibrate
        self.examples = list(examples)
        self._classifiers: dict[tuple[str, ...], Any] = {}

    def _classifier(self, labels: Sequence[str]):
        from polyformer.tasks.classify import TextExample
        from polyformer.tasks.encoding import TaskTokenizer
        from polyformer.tasks.prompting import PromptClassifier, PromptSpec

        key = tuple(labels)
        if key not in self._classifiers:
            shots = [TextExample(text, label=label, where=f"examples[{i}]") for i, (text, label) in enumerate(self.examples)]
            unknown = sorted({shot.label for shot in shots} - set(labels))
            if unknown:
                raise ConfigError(f"examples use label(s) {unknown} that are not among candidate_labels {list(labels)}")
            spec = PromptSpec({label: label for label in labels}, shots=shots, calibrate=self.calibrate,
                              **{k: v for k, v in (("template", self.template), ("instruction", self.instruction)) if v is not None})
            self._classifiers[key] = PromptClassifier(self.model, TaskTokenizer(self.tokenizer, 512), spec)
        return self._classifiers[key]

    def __call__(self, inputs: str | list[str], candidate_labels: Sequence[str]) -> Any:
        from polyformer.tasks.classify import TextExample

        classifier = self._classifier(list(candidate_labels))

        def run(texts: list[str]) -> list[dict[str, Any]]:
            rows = classifier.predict([TextExample(t, where=f"input[{i}]") for i, t in enumerate(texts)], self.batch_size)
            return [{"text": row["text"], "labels": sorted(row["scores"], key=row["scores"].get, reverse=True),
                     "scores": sorted(row["scores"].values(), reverse=True)} for row in rows]

        return _one_or_many(inputs, run)


class EmbeddingPipeline:
    """feature-extraction: texts → vectors; sentence-similarity: cosine of a source to sentences."""

    def __init__(self, task: str, model: Any, **settings: Any) -> None:
        from polyformer.embeddings import SentenceEncoder

        self.task = task
        normalize = settings.pop("normalize", True)
        self.encoder = model if isinstance(model, SentenceEncoder) else SentenceEncoder.load(model, **settings)
        self.normalize = normalize

    def __call__(self, inputs: str | list[str], sentences: Sequence[str] | None = None) -> Any:
        if self.task == "sentence-similarity":
            if not isinstance(inputs, str) or not sentences:
                raise ConfigError("sentence-similarity takes a source sentence and sentences=[...] to compare it with")
            vectors = self.encoder.encode([inputs, *sentences], normalize=True)
            return (vectors[1:] @ vectors[0]).tolist()
        texts = inputs if isinstance(inputs, list) else [inputs]
        vectors = self.encoder.encode(texts, normalize=self.normalize)
        return vectors if isinstance(inputs, list) else vectors[0]


def _text_generation(model: Any, tokenizer: Any, **kw: Any) -> Any:
    module_name, _, attribute = TEXT_GENERATION.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"text-generation needs {TEXT_GENERATION.replace(':', '.')}, which is not available "
                          f"in this installation ({err})") from None
    return cls(model, tokenizer) if tokenizer is not None else cls.load(model, **kw)


def pipeline(task: str, model: Any, tokenizer: Any = None, **kw: Any) -> Any:
    """A callable that turns inputs into predictions for `task` with `model` (see the module docstring)."""
    name = ALIASES.get(task, task)
    if name in TASK_RECIPES:
        return TaskPipeline(TASK_RECIPES[name], model, tokenizer, **kw)
    if name == "fill-mask":
        return FillMaskPipeline(model, tokenizer, **kw)
    if name == "zero-shot-classification":
        return ZeroShotPipeline(model, tokenizer, **kw)
    if name in ("feature-extraction", "sentence-similarity"):
        return EmbeddingPipeline(name, model, **kw)
    if name == "text-generation":
        return _text_generation(model, tokenizer, **kw)
    raise ConfigError(f"unknown pipeline task {task!r}; choose one of {', '.join(TASKS)}")
