"""Tiny models, data files and fast fine-tuning settings for the task tests.

`encoder_dir` / `decoder_dir` / `seq2seq_dir` write small random models (native folders with a
tokenizer beside them) that `polyformer finetune --model DIR` and `pf.load` read like any
checkpoint. `FAST` fine-tunes them in seconds: a high learning rate, no warmup, no early stop.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

import polyformer as pf
from polyformer.tokenizers import Tokenizer, train_bpe, train_wordpiece

SMALL = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128)
FAST = dict(batch_size=8, lr=3e-3, warmup_ratio=0.0, weight_decay=0.0, patience=None, progress=False)

SENTIMENT = [
    ("a gripping and clever thriller", "fresh"),
    ("wonderful acting and a moving story", "fresh"),
    ("the best film of the year", "fresh"),
    ("a joyful , funny delight", "fresh"),
    ("dull , lifeless and far too long", "rotten"),
    ("a boring mess with no story", "rotten"),
    ("the worst script in years", "rotten"),
    ("tedious and badly acted", "rotten"),
]
NER_SENTENCES = [
    (["Obama", "visited", "Paris", "today"], ["B-person", "O", "B-geo-loc", "O"]),
    (["I", "love", "New", "York", "City"], ["O", "O", "B-geo-loc", "I-geo-loc", "I-geo-loc"]),
    (["Apple", "hired", "Tim", "Cook"], ["B-company", "O", "B-person", "I-person"]),
    (["we", "flew", "to", "London", "with", "Ryanair"], ["O", "O", "O", "B-geo-loc", "O", "B-company"]),
    (["Taylor", "Swift", "sang", "in", "Berlin"], ["B-person", "I-person", "O", "O", "B-geo-loc"]),
    (["nothing", "to", "see", "here"], ["O", "O", "O", "O"]),
]


def save_model(config: pf.ModelConfig, tokenizer: Tokenizer, out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    pf.save(pf.PolyformerModel(config), out)
    tokenizer.save(out)
    return out


def encoder_dir(tokenizer: Tokenizer, out: Path, **overrides: Any) -> Path:
    """A tiny BERT (post-norm, pooler, token types) over `tokenizer`'s vocabulary."""
    return save_model(pf.preset("bert-tiny", vocab_size=tokenizer.vocab_size, **{**SMALL, **overrides}), tokenizer, out)


def decoder_dir(tokenizer: Tokenizer, out: Path, **overrides: Any) -> Path:
    """A tiny Llama-style decoder with an LM head (RMSNorm, rotary, SwiGLU, GQA)."""
    fields = {**SMALL, "num_heads": 4, "num_kv_heads": 2, **overrides}
    return save_model(pf.preset("llama-tiny", vocab_size=tokenizer.vocab_size, **fields), tokenizer, out)


def seq2seq_dir(tokenizer: Tokenizer, out: Path) -> Path:
    """A tiny encoder–decoder (Marian-style)."""
    config = pf.preset("transformer-small", vocab_size=tokenizer.vocab_size, **SMALL,
                       pad_token_id=tokenizer.pad_token_id or 0)
    return save_model(config, tokenizer, out)


def bpe_tokenizer(texts: list[str]) -> Tokenizer:
    """A small byte-level BPE (a decoder's tokenizer: no specials around texts, no segment ids)."""
    return train_bpe(list(texts) * 4, 400, min_frequency=1)


def wordpiece_tokenizer(texts: list[str]) -> Tokenizer:
    """A small WordPiece vocabulary (an encoder's tokenizer: [CLS] / [SEP], segment ids)."""
    return train_wordpiece(list(texts) * 4, 300, min_frequency=1)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def sentiment_rows() -> list[dict[str, str]]:
    return [{"text": text, "label": label} for text, label in SENTIMENT]


def write_conll(path: Path, sentences=NER_SENTENCES) -> Path:
    blocks = ["\n".join(f"{word}\t{tag}" for word, tag in zip(words, tags)) for words, tags in sentences]
    path.write_text("\n\n".join(blocks) + "\n")
    return path
