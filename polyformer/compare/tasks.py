"""The suite: one recipe per task, the same for every model, each run through polyformer's own entry points.

| task | recipe | figures |
|---|---|---|
| classify | `finetune --task classify` on rotten_tomatoes, then `evaluate` on its test split | accuracy, macro-F1 |
| ner | `finetune --task ner` on wnut16, `evaluate` | entity F1 |
| pair | `finetune --task pair` on shakespeare next-line pairs, `evaluate` | accuracy |
| translate | `finetune --task translate` on bible-en-es, `evaluate` (greedy decoding, sacreBLEU) | BLEU, chrF |
| perplexity | the pretraining objective on held-out text (perplexity.py) | perplexity / pseudo-perplexity |
| generate | `TextGenerationPipeline` on one fixed prompt (sampled, seeded) | the text |
| embed | `embed-eval`'s sets, two poolings, before and after a short contrastive stage (`embed-train`) | retrieval MRR@10, V-measure, kNN accuracy |
| zero-shot | `evaluate --prompt` on rotten_tomatoes (no training) | accuracy |

Fine-tuning: `finetune_steps` steps of `finetune_batch_size`, one learning rate for all models
(linear warmup 10%, linear decay), dev evaluation once at the end, no early stopping. Every task
evaluates on at most `eval_limit` test examples (translation a fifth of that). Which tasks a model
runs depends on its form: translation and generation need an LM head on a decoder or an
encoder–decoder, zero-shot prompting a decoder with an LM head, pseudo-perplexity an MLM head.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyformer.compare.spec import CompareSpec, ModelEntry

POOLING_SECOND = {"encoder": "cls", "decoder": "last", "encoder-decoder": "last"}


@dataclass
class Context:
    """What a task runner needs: the comparison, the model, the seed and a clean run directory."""

    spec: CompareSpec
    entry: ModelEntry
    seed: int
    run_dir: Path
    out: Path  # the comparison's folder (shared caches)


def applies(task: str, entry: ModelEntry) -> bool:
    """Whether a model of this form and head runs the task (module docstring)."""
    if task in ("translate", "generate"):
        return entry.generates
    if task == "zero-shot":
        return entry.arch == "decoder" and entry.head == "lm"
    if task == "perplexity":
        return entry.generates or entry.head in ("mlm", "pretraining")
    return True


def seed_dependent(task: str, spec: CompareSpec) -> bool:
    """Pretrained models are the same for every seed; tasks that train nothing then run once."""
    return spec.scratch or task not in ("perplexity", "zero-shot")


def _options(spec: CompareSpec, **settings: Any):
    from polyformer.tasks.recipe import task_options

    return task_options(None, max_length=spec.max_length, batch_size=32, device=spec.device, **settings)


def _finetuned(ctx: Context, task: str, **fields: Any) -> tuple[Path, dict[str, float]]:
    """Fine-tune the model for `task` in RUN_DIR/finetune; (its folder, dev metrics)."""
    from polyformer.tasks.recipe import FinetuneSpec, finetune

    spec = ctx.spec
    settings: dict[str, Any] = dict(
        max_steps=spec.finetune_steps, batch_size=spec.finetune_batch_size, lr=spec.finetune_rate(), warmup_ratio=0.1,
        eval_every=spec.finetune_steps, patience=None, dev_limit=min(spec.eval_limit, 200), seed=ctx.seed,
        device=spec.device, progress=False, max_length=spec.max_length)
    result = finetune(FinetuneSpec(task=task, model=ctx.entry.path, data=spec.data_for(task),
                                   out=str(ctx.run_dir / "finetune"), **{**settings, **fields}))
    return ctx.run_dir / "finetune", result.metrics


def finetuned_task(task: str, keep: tuple[str, ...]) -> Callable[[Context], dict[str, Any]]:
    """A runner: fine-tune on the task's train split, evaluate on (the first eval_limit of) its test split."""

    def run(ctx: Context) -> dict[str, Any]:
        from polyformer.tasks.recipe import evaluate

        folder, dev = _finetuned(ctx, task)
        result = evaluate(task, folder, ctx.spec.data_for(task), "test", _options(ctx.spec), limit=ctx.spec.eval_limit)
        return {"metrics": {name: result.metrics[name] for name in keep if name in result.metrics},
                "budget": {"steps": ctx.spec.finetune_steps, "batch_size": ctx.spec.finetune_batch_size},
                "extra": {"dev": {k: v for k, v in dev.items() if isinstance(v, (int, float))}}}

    return run


def translate(ctx: Context) -> dict[str, Any]:
    from polyformer.tasks.recipe import evaluate

    spec = ctx.spec
    folder, _ = _finetuned(ctx, "translate", eval_beams=1, max_new_tokens=spec.max_new_tokens * 2,
                           dev_limit=max(1, spec.eval_limit // 10))  # one greedy dev decode at the end
    options = _options(spec, num_beams=1, max_new_tokens=spec.max_new_tokens * 2)
    result = evaluate("translate", folder, spec.data_for("translate"), "test", options, limit=max(1, spec.eval_limit // 5))
    outputs = result.details.get("outputs", [])[:3]
    return {"metrics": {"bleu": result.metrics["bleu"], "chrf": result.metrics["chrf"]},
            "budget": {"steps": spec.finetune_steps, "batch_size": spec.finetune_batch_size},
            "extra": {"examples": outputs}}


def _loaded(ctx: Context):
    from polyformer.tasks.models import load_pretrained
    from polyformer.tasks.recipe import inference_device

    model, tokenizer, _ = load_pretrained(ctx.entry.path)
    return model.to(inference_device(ctx.spec.device)).eval(), tokenizer


def perplexity(ctx: Context) -> dict[str, Any]:
    from polyformer.compare.perplexity import held_out_lines, pseudo_perplexity, source_perplexity

    model, tokenizer = _loaded(ctx)
    if model.config.arch == "encoder":
        scores = pseudo_perplexity(model, tokenizer, held_out_lines(ctx.spec.data, min(ctx.spec.eval_limit, 200)))
        return {"metrics": {"pseudo_perplexity": scores["pseudo_perplexity"]}, "extra": {"tokens": scores["tokens"]}}
    scores = source_perplexity(model, tokenizer, ctx.spec.data, ctx.spec.block_size, ctx.out / "cache" / "shards")
    return {"metrics": {"perplexity": scores["perplexity"]}, "extra": {"tokens": scores["tokens"]}}


def generate(ctx: Context) -> dict[str, Any]:
    from polyformer.generation.text_pipeline import TextGenerationPipeline

    model, tokenizer = _loaded(ctx)
    pipe = TextGenerationPipeline(model, tokenizer)
    # a decoder trained on raw text continues the prompt as it stands; an encoder reads it with its specials
    completion = pipe.complete([ctx.spec.prompt], add_special_tokens=model.config.arch == "encoder-decoder",
                               max_new_tokens=ctx.spec.max_new_tokens, temperature=0.8, top_p=0.95, seed=ctx.seed)[0]
    text = completion.text  # a WordPiece completion may start inside the prompt's last word
    return {"metrics": {}, "extra": {"prompt": ctx.spec.prompt, "text": text[2:] if text.startswith("##") else text}}


def zero_shot(ctx: Context) -> dict[str, Any]:
    from polyformer.tasks.classify import CLASSIFY
    from polyformer.tasks.prompting import PromptSettings, prompted_classifier

    data, options = ctx.spec.data_for("zero-shot"), _options(ctx.spec)
    classifier = prompted_classifier(ctx.entry.path, data, options, PromptSettings(shots=0))
    examples = CLASSIFY.load(data, "test", options)[: ctx.spec.eval_limit]
    result = classifier.evaluate(examples, options.batch_size)
    return {"metrics": {"accuracy": result.metrics["accuracy"], "calibrated_accuracy": result.metrics["calibrated_accuracy"]}}


def embed(ctx: Context) -> dict[str, Any]:
    from polyformer.compare.embedding import embedding_suite

    return embedding_suite(ctx, [("mean", "mean"), (POOLING_SECOND[ctx.entry.arch], "token")])


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "classify": finetuned_task("classify", ("accuracy", "macro_f1")),
    "ner": finetuned_task("ner", ("f1", "precision", "recall")),
    "pair": finetuned_task("pair", ("accuracy", "macro_f1")),
    "translate": translate,
    "perplexity": perplexity,
    "generate": generate,
    "embed": embed,
    "zero-shot": zero_shot,
}


def run_task(task: str, ctx: Context) -> dict[str, Any]:
    """The task's result with its wall time."""
    started = time.perf_counter()
    result = RUNNERS[task](ctx)
    result["wall_s"] = time.perf_counter() - started
    return result
