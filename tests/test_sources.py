"""Batch sources: the trainer contract (pure, rank-sliced, resumable) for causal LM, MLM(+NSP), seq2seq."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyformer.data.collators import IGNORE_INDEX, MLMTokens
from polyformer.data.shards import TokenShard, write_shard
from polyformer.data.sources import BatchSource, CausalLMSource, MLMSource, Seq2SeqSource
from polyformer.errors import DataError
from polyformer.tokenizers import Tokenizer, train_bpe, train_wordpiece

EXCERPT = 6_000  # characters of each work: a real corpus, tokenised in well under a second


@pytest.fixture(scope="module")
def texts(shakespeare_works: list[tuple[str, str]]) -> list[str]:
    return [text[:EXCERPT] for _, text in shakespeare_works[:10]]


@pytest.fixture(scope="module")
def wordpiece(texts: list[str]) -> Tokenizer:
    return train_wordpiece(texts, 400)


@pytest.fixture(scope="module")
def shard_pair(texts: list[str], wordpiece: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[TokenShard, TokenShard]:
    folder = tmp_path_factory.mktemp("shards")
    return write_shard(texts[:8], wordpiece, folder / "train"), write_shard(texts[8:], wordpiece, folder / "valid")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _assert_contract(source: BatchSource) -> None:
    """Pure in (step, micro); rank 0 + rank 1 of 2 == the single-process batch; fixed eval batches."""
    whole = source.train_batch(step=7, micro=1)
    _assert_same(whole, source.train_batch(step=7, micro=1))
    halves = [source.train_batch(step=7, micro=1, rank=r, world_size=2) for r in range(2)]
    _assert_same(whole, {key: torch.cat([h[key] for h in halves]) for key in whole})
    assert not torch.equal(whole["input_ids"], source.train_batch(step=8, micro=1)["input_ids"])
    assert not torch.equal(whole["input_ids"], source.train_batch(step=7, micro=0)["input_ids"])
    first, second = list(source.eval_batches()), list(source.eval_batches())
    assert first and len(first) == len(second)
    for a, b in zip(first, second):
        _assert_same(a, b)


def test_causal_lm_source(shard_pair: tuple[TokenShard, TokenShard]) -> None:
    train, valid = shard_pair
    source = CausalLMSource(train, block_size=32, batch_size=4, seed=5, validation=valid, num_eval_batches=3)
    _assert_contract(source)
    batch = source.train_batch(0, 0)
    assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].shape == (4, 32)
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    stream = torch.from_numpy(np.asarray(train.tokens, dtype=np.int64))
    row = batch["input_ids"][0]
    starts = [s for s in range(len(stream) - 32) if torch.equal(stream[s: s + 32], row)]
    assert starts and torch.equal(batch["labels"][0], stream[starts[0] + 1: starts[0] + 33])
    assert len(list(source.eval_batches())) == 3
    with pytest.raises(DataError, match="does not divide"):
        source.train_batch(0, 0, rank=0, world_size=3)


def test_document_aware_positions_restart_at_each_separator(shard_pair: tuple[TokenShard, TokenShard]) -> None:
    train, _ = shard_pair
    source = CausalLMSource(train, block_size=128, batch_size=64, seed=0, document_aware=True)
    batch = source.train_batch(0, 0)
    ids, docs, positions = batch["input_ids"], batch["document_ids"], batch["position_ids"]
    after_separator = torch.zeros_like(ids, dtype=torch.bool)
    after_separator[:, 1:] = ids[:, :-1] == train.meta.separator_id
    new_document = torch.zeros_like(after_separator)
    new_document[:, 1:] = docs[:, 1:] != docs[:, :-1]
    assert after_separator.any()  # some blocks straddle two works
    assert torch.equal(new_document, after_separator)
    assert torch.all(positions[new_document] == 0) and torch.all(positions[:, 0] == 0)
    steps = positions[:, 1:] - positions[:, :-1]
    assert torch.all((steps == 1) | new_document[:, 1:])


def test_mlm_source_with_nsp(shard_pair: tuple[TokenShard, TokenShard], wordpiece: Tokenizer) -> None:
    train, valid = shard_pair
    ids = MLMTokens.from_tokenizer(wordpiece, whole_word=True)
    source = MLMSource(train, ids, block_size=48, batch_size=64, seed=1, nsp=True, whole_word=True,
                       validation=valid, num_eval_batches=2)
    _assert_contract(source)
    batch = source.train_batch(3, 0)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
    assert batch["input_ids"].shape == (64, 48) and batch["next_sentence_label"].shape == (64,)
    assert 0.25 < batch["next_sentence_label"].float().mean() < 0.75
    assert torch.all(batch["input_ids"][:, 0] == wordpiece.cls_token_id)
    selected = batch["labels"] != IGNORE_INDEX
    special = torch.isin(batch["labels"], torch.tensor(sorted(wordpiece.special_ids)))
    assert selected.any() and not special.any()  # special tokens are never prediction targets
    assert not selected[batch["attention_mask"] == 0].any()
    # token types: 0 up to and including the first [SEP], 1 after it up to the last real token
    for ids_row, types, mask in zip(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]):
        seps = torch.nonzero(ids_row == wordpiece.sep_token_id).flatten().tolist()
        length = int(mask.sum())
        assert len(seps) == 2 and seps[1] == length - 1
        assert types[: seps[0] + 1].eq(0).all() and types[seps[0] + 1: length].eq(1).all()
        assert types[length:].eq(0).all()


def test_mlm_source_without_nsp(shard_pair: tuple[TokenShard, TokenShard], wordpiece: Tokenizer) -> None:
    train, _ = shard_pair
    source = MLMSource(train, MLMTokens.from_tokenizer(wordpiece), block_size=32, batch_size=4, seed=2)
    batch = source.train_batch(0, 0)
    assert "next_sentence_label" not in batch and torch.all(batch["attention_mask"] == 1)
    assert torch.all(batch["input_ids"][:, -1] == wordpiece.sep_token_id)
    assert list(source.eval_batches()) == []  # no validation shard given


def test_seq2seq_source(texts: list[str]) -> None:
    tokenizer = train_bpe(texts, 300, special_tokens=("<pad>", "<s>", "</s>"))
    pairs = [(f"line {i}: {text[:40]}", text[40:70]) for i, text in enumerate(texts)]
    source = Seq2SeqSource(pairs, tokenizer, batch_size=4, seed=3, max_target_length=12,
                           validation_pairs=pairs[:5])
    _assert_contract(source)
    batch = source.train_batch(0, 0)
    labels, decoder_inputs = batch["labels"], batch["decoder_input_ids"]
    assert torch.all(decoder_inputs[:, 0] == tokenizer.bos_token_id)
    real = labels != IGNORE_INDEX
    assert torch.equal(decoder_inputs[:, 1:][real[:, 1:]], labels[:, :-1][real[:, 1:]])
    assert torch.equal(batch["decoder_attention_mask"].bool(), real)
    assert labels.shape[1] <= 12 and torch.all(labels.gather(1, real.sum(1, keepdim=True) - 1) == tokenizer.eos_token_id)
    assert [len(b["input_ids"]) for b in source.eval_batches()] == [4, 1]


def test_corpus_shorter_than_a_block_is_an_error(tmp_path: Path, wordpiece: Tokenizer) -> None:
    shard = write_shard(["to be or not to be"], wordpiece, tmp_path / "tiny", source="tiny.txt")
    with pytest.raises(DataError, match=rf"tiny\.txt .*has {len(shard)} tokens; .* needs 65"):
        CausalLMSource(shard, block_size=64, batch_size=2, seed=0)
    with pytest.raises(DataError, match=rf"has {len(shard)} tokens; .* needs 62"):
        MLMSource(shard, MLMTokens.from_tokenizer(wordpiece), block_size=64, batch_size=2, seed=0)
    with pytest.raises(DataError, match="2 or more documents"):
        MLMSource(shard, MLMTokens.from_tokenizer(wordpiece), block_size=8, batch_size=2, seed=0, nsp=True)
