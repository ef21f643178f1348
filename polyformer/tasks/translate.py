"""The text-to-text recipes: `translate` (alias `seq2seq`) and `lm` (instruction / response fine-tuning).

    finetune(FinetuneSpec(task="translate", preset="transformer-small", data="bible-en-es", out="runs/mt"))
    evaluate("translate", "runs/mt", "bible-en-es")          # sacreBLEU BLEU / chrF on the test books
    list(predict("translate", "runs/mt", ["In the beginning God created the heavens."]))

Both read (source, target) pairs (`polyformer.tasks.textpairs`), lay them out for the model's form
(`polyformer.tasks.formats`: encoder–decoder, decoder with a separator, or a chat template) and
generate with batched beam search (`polyformer.tasks.decoding`). They differ in what they measure:
translate scores the decoded outputs with corpus BLEU and chrF (`metrics.translation_scores`,
signatures in the details); lm the loss (and perplexity) of the reference responses, the loss
taken on the response tokens only. Fine-tuning runs through `polyformer.tasks.generative`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from polyformer.errors import DataError
from polyformer.tasks.base import Evaluation, TaskOptions, logger, report_truncation
from polyformer.tasks.decoding import DecodeSettings, decode
from polyformer.tasks.formats import DEFAULT_INSTRUCTION, PairLayout, layout_kind
from polyformer.tasks.metrics import translation_scores
from polyformer.tasks.textpairs import TextPair, languages, load_pairs, parse_source
from polyformer.training.objectives import CausalLM, Seq2SeqLM

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tasks.encoding import TaskTokenizer


def decode_settings(options: TaskOptions, max_length: int) -> DecodeSettings:
    return DecodeSettings(options.num_beams, options.length_penalty, options.max_new_tokens or max_length,
                          options.batch_size)


class TextToTextTask:
    """A recipe from source texts to target texts (see the module docstring)."""

    default_max_length = 256
    generative = True

    def __init__(self, name: str, builtin: str | None, metric: str, from_scratch: bool, output: str,
                 instruction: str) -> None:
        self.name, self.builtin, self.metric, self.from_scratch = name, builtin, metric, from_scratch
        self.output = output  # the predicted text's key in prediction rows
        self.instruction = instruction  # the chat layout's default user turn

    def layout(self, model: PolyformerModel, encoder: TaskTokenizer, options: TaskOptions) -> PairLayout:
        """The pair layout the model was fine-tuned with (settings in its config), else the default for its form."""
        extra = model.config.extra
        pair_languages = options.languages or tuple(extra.get("languages") or (None, None))
        request = options.instruction or extra.get("instruction") or self.instruction
        return PairLayout(encoder.tokenizer, model.config, layout_kind(model.config, encoder.tokenizer),
                          encoder.max_length, request, pair_languages)  # type: ignore[arg-type]

    # ---- data ---------------------------------------------------------------------------------
    def load(self, data: str, split: str, options: TaskOptions) -> list[TextPair]:
        return load_pairs(data, split, options)

    def options_for(self, data: str | None, options: TaskOptions) -> TaskOptions:
        """The options with the languages of built-in data filled in (they word a chat model's request)."""
        if options.languages is not None or data is None:
            return options
        found = languages(data, options.direction)
        return dataclasses.replace(options, languages=found) if any(found) else options

    def head(self, options: TaskOptions, model: PolyformerModel | None = None) -> str:
        return "lm"

    def head_settings(self, examples: Sequence[TextPair], options: TaskOptions) -> dict[str, Any]:
        return {}

    def best_metric(self, model: PolyformerModel) -> str:
        return self.metric

    def check(self, examples: Sequence[TextPair], model: PolyformerModel, source: str) -> None:
        missing = next((e for e in examples if e.target is None), None)
        if missing is not None:
            raise DataError(f"{missing.where}: evaluation needs a target text beside each source")

    # ---- training -----------------------------------------------------------------------------
    def objective(self, model: PolyformerModel, label_smoothing: float = 0.0):
        if model.config.arch == "encoder-decoder":
            return Seq2SeqLM(label_smoothing=label_smoothing)
        return CausalLM(label_smoothing=label_smoothing)

    def features(self, examples: Sequence[TextPair], encoder: TaskTokenizer, model: PolyformerModel,
                 options: TaskOptions) -> tuple[list[dict[str, list[int]]], int]:
        """Training rows of the pairs, and how many were cut to max_length."""
        layout = self.layout(model, encoder, options)
        encoded = layout.pairs([e.source for e in examples], [e.target or "" for e in examples])
        return [layout.feature(e) for e in encoded], sum(e.truncated for e in encoded)

    # ---- evaluation and prediction ----------------------------------------------------------------
    def evaluate(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[TextPair],
                 options: TaskOptions) -> Evaluation:
        if self.metric == "loss":
            return self._evaluate_loss(model, encoder, examples, options)
        outputs = decode(model, self.layout(model, encoder, options), [e.source for e in examples],
                         decode_settings(options, encoder.max_length))
        report_truncation(sum(o.truncated for o in outputs), len(outputs), encoder.max_length, "sources")
        metrics, signatures = translation_scores([o.text for o in outputs], [e.target or "" for e in examples])
        rows = [{"id": e.id, "source": e.source, "reference": e.target, self.output: o.text}
                for e, o in zip(examples, outputs)]
        return Evaluation(metrics, {"signatures": signatures, "outputs": rows, "num_beams": options.num_beams})

    @torch.inference_mode()
    def _evaluate_loss(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[TextPair],
                       options: TaskOptions) -> Evaluation:
        """Mean cross-entropy of the reference targets (target tokens only) and its perplexity."""
        from polyformer.tasks.generative import collator_for

        features, cut = self.features(examples, encoder, model, options)
        report_truncation(cut, len(features), encoder.max_length, "pairs")
        collate, objective = collator_for(model, encoder.pad_id), self.objective(model)
        total, count = 0.0, 0
        for start in range(0, len(features), options.batch_size):
            batch = {k: v.to(model.device) for k, v in collate(features[start: start + options.batch_size]).items()}
            total += float(objective.compute(model.eval(), batch).sums["lm"])
            count += int(objective.counts(batch)["lm"])
        loss = total / max(1, count)
        return Evaluation({"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(count)})

    def parse_input(self, item: Any, where: str, options: TaskOptions) -> TextPair:
        return parse_source(item, where, options)

    def predict(self, model: PolyformerModel, encoder: TaskTokenizer, inputs: Sequence[TextPair],
                options: TaskOptions) -> list[dict[str, Any]]:
        """One row per input: the source and the generated text (and the input's id when it has one)."""
        outputs = decode(model, self.layout(model, encoder, options), [e.source for e in inputs],
                         decode_settings(options, encoder.max_length))
        cut = sum(o.truncated for o in outputs)
        if cut:
            logger.warning("%d of %d inputs were cut to fit max_length=%d tokens", cut, len(outputs), encoder.max_length)
        rows = []
        for example, output in zip(inputs, outputs):
            row: dict[str, Any] = {"id": example.id} if example.id is not None else {}
            rows.append({**row, "source": example.source, self.output: output.text, "truncated": output.truncated})
        return rows


def copy_source(data: str, split: str | None = None, options: TaskOptions | None = None) -> Evaluation:
    """The copy-the-source baseline: every source given back as its own translation (built-in data: its test books)."""
    options = TRANSLATE.options_for(data, options or TaskOptions())
    examples = TRANSLATE.load(data, split or ("test" if data == TRANSLATE.builtin else "all"), options)
    metrics, signatures = translation_scores([e.source for e in examples], [e.target or "" for e in examples])
    rows = [{"id": e.id, "source": e.source, "reference": e.target, TRANSLATE.output: e.source} for e in examples]
    return Evaluation(metrics, {"signatures": signatures, "outputs": rows, "baseline": "copy"}, task=TRANSLATE.name)


TRANSLATE = TextToTextTask("translate", builtin="bible-en-es", metric="bleu", from_scratch=True,
                           output="translation_text", instruction=DEFAULT_INSTRUCTION)
LM = TextToTextTask("lm", builtin=None, metric="loss", from_scratch=False, output="generated_text", instruction="{text}")
