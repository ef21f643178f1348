"""Fine-tuning for the text-to-text tasks (translate, lm): a pretrained model, or one trained from scratch.

- Pretrained (`model`): any decoder or encoder–decoder checkpoint with its tokenizer — a Marian
  folder, GPT-2, SmolLM2's GGUF, a pretraining run; its LM head is kept and trained. Learning
  rate: linear warmup then linear decay, 5e-5 unless given.
- From scratch (`preset`, translate only): the preset sized to a byte-level BPE trained on both
  sides of the training pairs (specials `<pad> <s> </s> <sep>`; or `tokenizer`, to share one
  vocabulary between runs), with `model_config` overrides, trained with the original
  Transformer's recipe: Adam with β = (0.9, 0.98) and ε = 1e-9, linear warmup then the inverse
  square root of the step, peak rate d_model^-0.5 · warmup^-0.5 unless given, label smoothing 0.1.

Encoder–decoders learn the target given the source (`Seq2SeqLM`); decoders one sequence with the
loss on the target tokens only (`CausalLM`, prompt labels -100). Batches hold pairs of similar
length (shuffled windows, `ExampleSource.bucket_batches`), so little of each step is padding. The trainer evaluates the dev
loss every `eval_every` steps and, for translate, dev BLEU of decoded outputs (greedy unless
`eval_beams` > 1); the best checkpoint by dev BLEU (lm: dev loss) ends in OUT/model with the
tokenizer and, in its config's `extra`, the layout it was trained with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from polyformer.data.collators import seq2seq_batch
from polyformer.data.sources import to_tensors
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel
from polyformer.tasks.base import report_truncation
from polyformer.tasks.batches import Batch, ExampleSource, Feature, collate
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.tasks.formats import layout_kind
from polyformer.tasks.models import load_pretrained, require_head
from polyformer.tasks.runs import FinetuneResult, finish_run, start_run, train_and_dev, train_config
from polyformer.tokenizers import Tokenizer, load_tokenizer, train_bpe
from polyformer.training.trainer import TrainConfig, Trainer

if TYPE_CHECKING:
    from polyformer.tasks.recipe import FinetuneSpec
    from polyformer.tasks.textpairs import TextPair

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<sep>")
ADAM_BETAS = (0.9, 0.98)  # Vaswani et al. 2017, section 5.3
BUCKET_BATCHES = 32  # training batches hold pairs of similar length, drawn from windows of this many batches


def collator_for(model: PolyformerModel, pad_id: int) -> Callable[[Sequence[Feature]], Batch]:
    """Features → a training batch: seq2seq inputs with shifted decoder inputs, or right-padded causal rows."""
    if model.config.arch != "encoder-decoder":
        return lambda rows: collate(rows, pad_id, model.config.arch)
    start = model.config.decoder_start_token_id
    start = pad_id if start is None else start
    return lambda rows: to_tensors(seq2seq_batch([r["input_ids"] for r in rows], [r["target"] for r in rows], pad_id, start))


def finetune_text_to_text(task, spec: FinetuneSpec) -> FinetuneResult:
    """Fine-tune (or train from scratch) for a text-to-text task; see the module docstring."""
    options = task.options_for(spec.data, spec.options())
    train, dev = train_and_dev(task, spec, options)
    model, tokenizer = model_and_tokenizer(spec, train)
    max_length = min(spec.max_length or task.default_max_length, model.config.max_positions)
    extra: dict[str, Any] = {"task": spec.task, "max_length": max_length, "languages": list(options.languages or (None, None))}
    if model.config.arch == "decoder":
        extra["pair_format"] = layout_kind(model.config, tokenizer, spec.pair_format)
    if spec.instruction:
        extra["instruction"] = spec.instruction
    model.config.extra = {**model.config.extra, **extra}
    encoder = TaskTokenizer(tokenizer, max_length)
    features, cut = task.features(train, encoder, model, options)
    report_truncation(cut, len(train), max_length, "training pairs")
    dev_features, _ = task.features(dev, encoder, model, options)
    source = ExampleSource(features, spec.batch_size, spec.seed, encoder.pad_id, model.config.arch, spec.micro_batches,
                           collator_for(model, encoder.pad_id), dev_features, bucket_batches=BUCKET_BATCHES)
    hook = None
    if task.metric != "loss":
        dev_options = dataclasses.replace(options, num_beams=spec.eval_beams)

        def hook(current: PolyformerModel) -> dict[str, float]:
            return task.evaluate(current, encoder, dev, dev_options).metrics

    config = _train_config(spec, task.metric, model, source.steps_per_epoch())
    trainer = Trainer(model, task.objective(model, spec.label_smoothing), source, config, evaluate=hook,
                      run_info=start_run(spec))
    return finish_run(spec, trainer, tokenizer)


def model_and_tokenizer(spec: FinetuneSpec, train: Sequence[TextPair]) -> tuple[PolyformerModel, Tokenizer]:
    """The pretrained model and its tokenizer, or a fresh model of the preset with a trained (or given) BPE."""
    if spec.model is not None:
        model, tokenizer, _ = load_pretrained(spec.model)
        require_head(model, "lm", spec.model)
        return model, tokenizer
    from polyformer.config import preset
    from polyformer.training.pretrain import sized_config

    if spec.tokenizer:
        tokenizer = load_tokenizer(spec.tokenizer)
    else:
        texts = (text for pair in train for text in (pair.source, pair.target or ""))
        tokenizer = train_bpe(texts, spec.vocab_size, special_tokens=SPECIAL_TOKENS)
    arch = spec.model_config.get("arch", preset(spec.preset).arch)  # type: ignore[arg-type]
    if arch == "encoder":
        raise ConfigError(f"preset {spec.preset!r} is an encoder; translation needs a decoder or an encoder-decoder")
    torch.manual_seed(spec.seed)  # the fresh model's initialisation
    config = sized_config(spec.preset, arch, tokenizer, spec.max_length or 256, spec.model_config)  # type: ignore[arg-type]
    return PolyformerModel(config), tokenizer


def _train_config(spec: FinetuneSpec, metric: str, model: PolyformerModel, steps_per_epoch: int) -> TrainConfig:
    greater = metric != "loss"
    if spec.preset is None:
        return train_config(spec, steps_per_epoch, metric, greater, eval_batches=None)
    provisional = train_config(spec, steps_per_epoch, metric, greater)
    warmup = max(1, provisional.warmup_steps)
    lr = spec.lr or model.config.hidden_size ** -0.5 * warmup ** -0.5
    return train_config(spec, steps_per_epoch, metric, greater, eval_batches=None, lr=lr, warmup_steps=warmup,
                        schedule=spec.schedule or "inverse_sqrt", betas=ADAM_BETAS, eps=1e-9)
