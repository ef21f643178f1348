"""Held-out perplexity of each form, each in the quantity its objective defines.

- decoder: exp(mean next-token cross-entropy) over blocks of the corpus's validation split — the
  batches `polyformer pretrain` evaluates on (`build_source`);
- encoder–decoder: exp(mean cross-entropy of the next line's tokens given the line) over the
  validation line pairs — again the pretraining recipe's own evaluation batches, without label
  smoothing;
- encoder: pseudo-perplexity (Salazar et al. 2020, "Masked Language Model Scoring"): every token of
  a held-out line is masked in turn and scored by the MLM head given all the others;
  exp(−mean log p). It needs an MLM head (a sentence-transformers encoder has none).

The three are not the same quantity (a bidirectional model sees both sides of each token, the
encoder–decoder one previous line), so the report shows them side by side, not as a ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from polyformer.data.corpus import read_documents
from polyformer.training.objectives import CausalLM, Seq2SeqLM

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tokenizers import Tokenizer

EVAL_BATCHES = 20
MAX_LINE_TOKENS = 64
MIN_LINE_WORDS = 4


def source_perplexity(model: PolyformerModel, tokenizer: Tokenizer, data: list[str], block_size: int,
                      cache_dir: Path, batches: int = EVAL_BATCHES) -> dict[str, float]:
    """Decoder / encoder–decoder perplexity on the pretraining recipe's validation batches."""
    from polyformer.training.pretrain import PretrainSpec, build_source

    arch = model.config.arch
    context = max(8, min(block_size, model.config.max_positions - 1))
    spec = PretrainSpec(arch=arch, data=list(data), block_size=context, batch_size=16, label_smoothing=0.0)
    source = build_source(spec, tokenizer, cache_dir, 0)
    objective = Seq2SeqLM(label_smoothing=0.0) if arch == "encoder-decoder" else CausalLM()
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in islice(source.eval_batches(), batches):
            batch = {key: value.to(model.device) for key, value in batch.items()}
            total += float(objective.compute(model, batch).sums["lm"])
            count += int(objective.counts(batch)["lm"])
    loss = total / max(1, count)
    return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss, "tokens": float(count)}


def held_out_lines(data: list[str], count: int) -> list[str]:
    """The first `count` lines of MIN_LINE_WORDS words or more of the validation split."""
    lines: list[str] = []
    for document in read_documents(data[0] if len(data) == 1 else list(data), "validation"):
        for line in document.splitlines():
            if len(line.split()) >= MIN_LINE_WORDS:
                lines.append(line.strip())
                if len(lines) == count:
                    return lines
    return lines


@torch.inference_mode()
def pseudo_perplexity(model: PolyformerModel, tokenizer: Tokenizer, texts: Sequence[str],
                      batch_size: int = 64) -> dict[str, float]:
    """exp(−mean log p(token | the rest)) with each non-special token masked in turn (MLM head)."""
    mask_id, special = tokenizer.mask_token_id, set(tokenizer.special_ids)
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer.encode(text)[:MAX_LINE_TOKENS]
        positions = [i for i, token in enumerate(ids) if token not in special]
        if not positions:
            continue
        for start in range(0, len(positions), batch_size):
            chosen = torch.tensor(positions[start:start + batch_size])
            rows = torch.tensor(ids).repeat(len(chosen), 1)  # (P, T): one copy per masked position
            rows[torch.arange(len(chosen)), chosen] = mask_id
            logits = model(rows.to(model.device)).logits.float()  # (P, T, V)
            log_probs = logits[torch.arange(len(chosen)), chosen].log_softmax(-1)  # (P, V)
            targets = torch.tensor(ids)[chosen].to(log_probs.device)
            total -= float(log_probs.gather(1, targets[:, None]).sum())
            count += len(chosen)
    loss = total / max(1, count)
    return {"pseudo_perplexity": math.exp(min(loss, 50.0)), "loss": loss, "tokens": float(count)}
