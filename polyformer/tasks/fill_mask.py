"""Fill-mask: the k most likely tokens for each [MASK] of a text, from an MLM-pretrained encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from polyformer.errors import ConfigError, DataError

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel


@dataclass
class MaskPrediction:
    token: str
    token_id: int
    score: float  # softmax probability
    sequence: str  # the text with this token in place of the mask


@torch.inference_mode()
def fill_mask(model: PolyformerModel, tokenizer, text: str, top_k: int = 5) -> list[list[MaskPrediction]]:
    """For every [MASK] in `text` (left to right), its top_k predictions."""
    if model.config.head not in ("mlm", "pretraining"):
        raise ConfigError(f"fill-mask needs a masked-LM head; this model has head={model.config.head!r} "
                          "(pretrain with `polyformer pretrain --arch encoder` or load a *ForMaskedLM checkpoint)")
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise DataError("this tokenizer has no mask token")
    batch = tokenizer([text], truncation=True, max_length=model.config.max_positions)
    ids = batch["input_ids"]
    positions = (ids[0] == mask_id).nonzero().flatten().tolist()
    if not positions:
        raise DataError(f"no mask token in the text; write {tokenizer.convert_ids_to_tokens(mask_id)} where a word is missing")
    logits = model(ids, attention_mask=batch["attention_mask"], token_type_ids=batch.get("token_type_ids")).logits
    results = []
    for position in positions:
        probs = logits[0, position].float().softmax(-1)
        scores, token_ids = probs.topk(top_k)
        row = []
        for score, token_id in zip(scores.tolist(), token_ids.tolist()):
            filled = ids[0].clone()
            filled[position] = token_id
            row.append(MaskPrediction(
                token=tokenizer.convert_ids_to_tokens(token_id), token_id=token_id, score=score,
                sequence=tokenizer.decode(filled.tolist(), skip_special_tokens=True),
            ))
        results.append(row)
    return results


def fill_mask_rows(model: PolyformerModel, tokenizer, texts, top_k: int = 5):
    """JSON-ready predictions, one dict per text: `{"text", "masks": [[{token, token_id, score, sequence}, ...], ...]}`."""
    from dataclasses import asdict

    for text in texts:
        yield {"text": text, "masks": [[asdict(p) for p in row] for row in fill_mask(model, tokenizer, text, top_k)]}
