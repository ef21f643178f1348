"""From scratch: one tokenizer, three matched models, each pretrained on the same tokens.

- The tokenizer is a cased WordPiece vocabulary trained once on the corpus's train split (and,
  when translation is in the suite, on both sides of the translation training pairs, so Spanish
  words are not unknown tokens), with BERT's [PAD] [UNK] [CLS] [SEP] [MASK] and <s> </s>: every
  objective finds the tokens it needs in it (MLM, document separators, decoder start and EOS).
- Objectives are `polyformer pretrain`'s: the encoder masked-LM + next-sentence prediction, the
  decoder next-token prediction on packed blocks, the encoder–decoder next-segment prediction
  (line → next line of the corpus, the recipe's seq2seq objective on a plain corpus; no label
  smoothing, so its loss is a plain cross-entropy like the others').
- Same tokens: the encoder and decoder see `batch_size × block_size` tokens a step; the
  encoder–decoder's rows (a line and the next) are shorter, so it takes proportionally more rows a
  step, measured on its first batches, and every model takes ⌈budget / tokens per step⌉ steps. The
  tokens each model really saw are read back from its trainer state.

The plan (layouts, batch sizes, steps) is written to OUT/plan.json once and reused when a killed
comparison is started again, so the resumed runs are the runs that were started.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyformer.compare.matching import (
    Layout,
    check_matched,
    flops_per_token,
    match_layouts,
    size_named,
    stack_parameters,
)
from polyformer.compare.spec import SCRATCH_ARCHS, CompareSpec
from polyformer.data.corpus import read_documents
from polyformer.io.safetensors_io import write_json
from polyformer.tokenizers import Tokenizer, load_tokenizer, train_wordpiece
from polyformer.tokenizers.special import BERT_SPECIAL_TOKENS
from polyformer.training import pretrain as recipe
from polyformer.training.checkpoint import STATE_FILE, latest_checkpoint

if TYPE_CHECKING:
    from polyformer.compare.runs import SubRun

TOKENIZER_DIR = "tokenizer"
PLAN_FILE = "plan.json"
SPECIAL_TOKENS = (*BERT_SPECIAL_TOKENS, "<s>", "</s>")
OBJECTIVES = {"encoder": "masked LM + next-sentence prediction", "decoder": "causal LM (next token)",
              "encoder-decoder": "next segment (line → next line), seq2seq"}
BASE_PRESET = "gpt-tiny"  # every field that differs between the forms is set by the layout
MEASURED_BATCHES = 20
EVAL_BATCHES = 4  # held-out batches at each of the ten evaluations of a pretraining run
CURVE_POINTS = 200


@dataclass
class ArchPlan:
    """How one form is pretrained: its layout, batch, steps and the counts that the report states."""

    arch: str
    layout: dict[str, Any]
    model: dict[str, Any]  # ModelConfig overrides
    batch_size: int
    tokens_per_step: float
    max_steps: int
    non_embedding_parameters: int
    flops_per_token: float


def shared_tokenizer(spec: CompareSpec, out: Path) -> Tokenizer:
    """OUT/tokenizer, trained on the first call (see the module docstring)."""
    folder = out / TOKENIZER_DIR
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    texts = list(read_documents(spec.data[0] if len(spec.data) == 1 else list(spec.data), "train"))
    if "translate" in spec.tasks:
        texts += translation_texts(spec)
    tokenizer = train_wordpiece(texts, spec.vocab_size, lowercase=False, special_tokens=SPECIAL_TOKENS,
                                model_max_length=None)
    tokenizer.save(folder)
    return load_tokenizer(folder)


def translation_texts(spec: CompareSpec) -> list[str]:
    from polyformer.tasks.base import TaskOptions
    from polyformer.tasks.translate import TRANSLATE

    pairs = TRANSLATE.load(spec.data_for("translate"), "train", TaskOptions())
    return [text for pair in pairs for text in (pair.source, pair.target or "")]


def _pretrain_spec(spec: CompareSpec, arch: str, model: dict[str, Any], batch_size: int, steps: int, seed: int,
                   tokenizer_dir: Path) -> recipe.PretrainSpec:
    train = dict(max_steps=steps, lr=spec.lr, min_lr=spec.lr / 10, warmup_steps=max(1, steps // 20), schedule="cosine",
                 eval_every=max(1, steps // 10), eval_batches=EVAL_BATCHES, save_every=min(spec.save_every, steps),
                 keep_last=1, log_every=max(1, steps // CURVE_POINTS), seed=seed, device=spec.device,
                 progress=False, tensorboard=False, plot=False)
    return recipe.PretrainSpec(arch=arch, preset=BASE_PRESET, model=model, data=list(spec.data),
                               tokenizer=str(tokenizer_dir), block_size=spec.block_size, batch_size=batch_size,
                               nsp=True, label_smoothing=0.0, train=train)


def _tokens_per_row(spec: CompareSpec, model: dict[str, Any], batch_size: int, tokenizer: Tokenizer) -> float:
    """Mean tokens (source + target, padding included) per row of the encoder–decoder's first batches."""
    pspec = _pretrain_spec(spec, "encoder-decoder", model, batch_size, 1, 0, Path("."))
    source = recipe.build_source(pspec, tokenizer, None, 0)
    counts = [sum(batch[key].numel() for key in ("input_ids", "decoder_input_ids"))
              for batch in (source.train_batch(step, 0) for step in range(MEASURED_BATCHES))]
    return sum(counts) / (len(counts) * batch_size)


def make_plan(spec: CompareSpec, out: Path, tokenizer: Tokenizer) -> dict[str, ArchPlan]:
    """OUT/plan.json: read when it exists, else computed from the spec and written."""
    path = out / PLAN_FILE
    if path.is_file():
        return {arch: ArchPlan(**entry) for arch, entry in json.loads(path.read_text()).items()}
    size = size_named(spec.size)
    layouts = match_layouts(size, spec.match)
    plans: dict[str, ArchPlan] = {}
    for arch in SCRATCH_ARCHS:
        plans[arch] = _arch_plan(spec, arch, layouts[arch], tokenizer)
    check_matched({arch: plan.non_embedding_parameters for arch, plan in plans.items()}, spec.match)
    write_json({arch: asdict(plan) for arch, plan in plans.items()}, path)
    return plans


def _arch_plan(spec: CompareSpec, arch: str, layout: Layout, tokenizer: Tokenizer) -> ArchPlan:
    model = layout.overrides(size_named(spec.size))
    batch_size, per_row = spec.batch_size, float(spec.block_size)
    if arch == "encoder-decoder":
        per_row = _tokens_per_row(spec, model, spec.batch_size, tokenizer)
        batch_size = max(1, round(spec.batch_size * spec.block_size / per_row))
        per_row = _tokens_per_row(spec, model, batch_size, tokenizer)  # longer batches pad more: measure again
    tokens_per_step = per_row * batch_size
    config = recipe.sized_config(BASE_PRESET, arch, tokenizer, spec.block_size, model)
    context = spec.block_size if arch != "encoder-decoder" else max(1, round(per_row / 2))
    return ArchPlan(arch=arch, layout=asdict(layout), model=model, batch_size=batch_size,
                    tokens_per_step=tokens_per_step, max_steps=max(1, math.ceil(spec.budget_tokens / tokens_per_step)),
                    non_embedding_parameters=sum(stack_parameters(config).values()),
                    flops_per_token=flops_per_token(config, context))


def pretrain(run: SubRun, spec: CompareSpec, plan: ArchPlan, tokenizer_dir: Path) -> dict[str, Any]:
    """Pretrain (or resume) one form for one seed; the sub-run's result."""
    pspec = _pretrain_spec(spec, plan.arch, plan.model, plan.batch_size, plan.max_steps, run.seed, tokenizer_dir)
    if (run.path / recipe.SPEC_FILE).is_file():
        history = recipe.resume(run.path)
    else:
        history = recipe.run(pspec, run.fresh())
    state = json.loads((latest_checkpoint(run.path) / STATE_FILE).read_text())  # type: ignore[operator]
    last_eval = next((row for row in reversed(history) if "eval_loss" in row), {})
    curve = [{key: row[key] for key in ("step", "loss", "eval_loss") if key in row} for row in history]
    return {
        "model_dir": str(run.path / "model"),
        "metrics": {"pretrain_eval_loss": last_eval.get("eval_loss")},
        "steps": state["step"], "tokens": state["tokens_seen"], "train_s": state["elapsed_s"],
        "total_flops": plan.flops_per_token * state["tokens_seen"], "curve": curve,
    }
