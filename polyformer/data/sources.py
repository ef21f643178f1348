"""Batch sources: what the trainer asks for a micro-batch, for every pretraining objective.

The contract (`BatchSource`) makes data order part of the run's definition instead of iterator
state: `train_batch(step, micro, rank, world_size)` is a pure function of (seed, step, micro,
rank, world_size). The global micro-batch has `batch_size` rows; row r is built from its own
generator seeded with (seed, step, micro, r), and a rank returns rows
[rank * b / world_size, (rank + 1) * b / world_size). So two processes together see exactly the
rows one process would, and resuming at step N needs nothing but N.

`eval_batches()` yields the same validation batches every time (generators seeded with
(seed, "eval", batch, row), or the validation pairs in order for seq2seq); it yields nothing when
the source was built without validation data. Labels use IGNORE_INDEX (-100) where no loss is taken.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from polyformer.data.collators import (
    DocumentLayout,
    MLMTokens,
    block_rows,
    build_segments,
    document_positions,
    document_starts,
    mask_tokens,
    sample_nsp_spans,
    seq2seq_batch,
    shift_block,
    special_positions,
)
from polyformer.data.shards import TextTokenizer, TokenShard, encode_texts
from polyformer.errors import DataError

Arrays = dict[str, np.ndarray]
Batch = dict[str, torch.Tensor]
_TRAIN_STREAM = 0
_EVAL_STREAM = 1
DEFAULT_EVAL_BATCHES = 20


class BatchSource(Protocol):
    """What the trainer reads: seeded training micro-batches and fixed validation batches."""

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]: ...

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]: ...


def row_generator(seed: int, *key: int) -> np.random.Generator:
    """The generator of one row: a pure function of the seed and the row's key (non-negative ints)."""
    return np.random.default_rng([seed, *key])


def rank_rows(batch_size: int, rank: int, world_size: int) -> range:
    """The rows of the global micro-batch that `rank` of `world_size` processes reads."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not one of the {world_size} processes")
    if batch_size % world_size:
        raise DataError(f"batch size {batch_size} does not divide among {world_size} processes")
    share = batch_size // world_size
    return range(rank * share, (rank + 1) * share)


def to_tensors(arrays: Arrays) -> Batch:
    """int64 torch tensors of the arrays (sharing memory where the dtype already matches)."""
    return {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64)) for name, value in arrays.items()}


def _stack(rows: list[Arrays]) -> Arrays:
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def _require_tokens(shard: TokenShard, needed: int, what: str) -> None:
    if len(shard) < needed:
        source = shard.meta.source or str(shard.directory)
        raise DataError(f"{source} ({shard.meta.split}): the corpus has {len(shard)} tokens; {what} needs {needed}")


class _SeededSource:
    """Shared batching: rows from per-row generators over a training and an optional validation set.

    Subclasses implement `_rows(generators, validation)` -> stacked arrays of those rows.
    """

    def __init__(self, batch_size: int, seed: int, num_eval_batches: int, has_validation: bool) -> None:
        if batch_size < 1:
            raise DataError(f"batch size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_eval_batches = num_eval_batches if has_validation else 0

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> Batch:
        rows = rank_rows(self.batch_size, rank, world_size)
        return to_tensors(self._rows([row_generator(self.seed, _TRAIN_STREAM, step, micro, r) for r in rows], False))

    def eval_batches(self) -> Iterator[Batch]:
        for index in range(self.num_eval_batches):
            generators = [row_generator(self.seed, _EVAL_STREAM, index, r) for r in range(self.batch_size)]
            yield to_tensors(self._rows(generators, True))

    def _rows(self, generators: list[np.random.Generator], validation: bool) -> Arrays:
        raise NotImplementedError


class CausalLMSource(_SeededSource):
    """GPT pretraining: blocks of `block_size` tokens at random offsets of the packed stream (nanoGPT).

    Keys: `input_ids`, `labels` (B, T); with `document_aware`, also `document_ids` and
    `position_ids` (B, T) that restart at every document boundary inside a block.
    """

    def __init__(
        self,
        shard: TokenShard,
        block_size: int,
        batch_size: int,
        seed: int,
        document_aware: bool = False,
        validation: TokenShard | None = None,
        num_eval_batches: int = DEFAULT_EVAL_BATCHES,
    ) -> None:
        super().__init__(batch_size, seed, num_eval_batches, validation is not None)
        for data in (shard, validation):
            if data is not None:
                _require_tokens(data, block_size + 1, f"one block of {block_size} inputs plus the shifted label")
        self.shard, self.validation = shard, validation
        self.block_size = block_size
        self.document_aware = document_aware

    def _rows(self, generators: list[np.random.Generator], validation: bool) -> Arrays:
        shard = self.validation if validation else self.shard
        assert shard is not None
        starts = np.asarray([g.integers(0, len(shard) - self.block_size) for g in generators], dtype=np.int64)
        batch = shift_block(block_rows(shard.tokens, starts, self.block_size + 1))
        if self.document_aware:
            positions = starts[:, None] + np.arange(self.block_size)  # (B, T) stream index of each input
            batch["document_ids"], batch["position_ids"] = document_positions(
                document_starts(positions, shard.doc_offsets))
        return batch


class MLMSource(_SeededSource):
    """BERT pretraining: masked-LM blocks, optionally next-sentence pairs, from a shard.

    Without NSP each row is `[CLS] + block_size - 2 tokens at a random offset + [SEP]`; with NSP it
    is `[CLS] A [SEP] B [SEP]` padded to `block_size` plus `next_sentence_label`. Keys:
    `input_ids`, `attention_mask`, `token_type_ids`, `labels` (B, T) [, `next_sentence_label` (B,)].
    """

    def __init__(
        self,
        shard: TokenShard,
        ids: MLMTokens,
        block_size: int,
        batch_size: int,
        seed: int,
        nsp: bool = False,
        whole_word: bool = False,
        validation: TokenShard | None = None,
        num_eval_batches: int = DEFAULT_EVAL_BATCHES,
        mask_prob: float = 0.15,
    ) -> None:
        super().__init__(batch_size, seed, num_eval_batches, validation is not None)
        if nsp and block_size < 5:
            raise DataError(f"next-sentence pairs need block_size >= 5 ([CLS] A [SEP] B [SEP]), got {block_size}")
        if whole_word and ids.word_starts is None:
            raise DataError("whole-word masking needs word starts: MLMTokens.from_tokenizer(tok, whole_word=True)")
        for data in (shard, validation):
            if data is None:
                continue
            _require_tokens(data, block_size - 2, f"one block of {block_size} with [CLS] and [SEP]")
            if nsp and data.num_docs < 2:
                raise DataError(f"{data.meta.source}: next-sentence pairs need 2 or more documents, "
                                f"the {data.meta.split} split has {data.num_docs}")
        self.shard, self.validation = shard, validation
        self.ids = ids
        self.block_size = block_size
        self.nsp = nsp
        self.whole_word = whole_word
        self.mask_prob = mask_prob

    def _rows(self, generators: list[np.random.Generator], validation: bool) -> Arrays:
        shard = self.validation if validation else self.shard
        assert shard is not None
        build = self._pair if self.nsp else self._block
        return _stack([self._masked(build(shard, g), g) for g in generators])

    def _block(self, shard: TokenShard, generator: np.random.Generator) -> Arrays:
        content = self.block_size - 2
        start = int(generator.integers(0, len(shard) - content + 1))
        return build_segments(shard.tokens[start: start + content], None, self.ids, self.block_size)

    def _pair(self, shard: TokenShard, generator: np.random.Generator) -> Arrays:
        layout = DocumentLayout(shard.doc_offsets, shard.doc_ends, shard.line_offsets)
        spans = sample_nsp_spans(layout, self.block_size - 3, generator)
        a, b = (shard.tokens[start:end] for start, end in (spans.a, spans.b))
        row = build_segments(a, b, self.ids, self.block_size)
        row["next_sentence_label"] = np.asarray(spans.label, dtype=np.int64)
        return row

    def _masked(self, row: Arrays, generator: np.random.Generator) -> Arrays:
        ids = self.ids
        special = special_positions(row["input_ids"], ids.special_ids) | (row["attention_mask"] == 0)
        starts = ids.word_starts[row["input_ids"]] if self.whole_word and ids.word_starts is not None else None
        row["input_ids"], row["labels"] = mask_tokens(
            row["input_ids"], special, ids.vocab_size, ids.mask_id, generator, self.mask_prob, starts, ids.special_ids)
        return row


class Seq2SeqSource(_SeededSource):
    """Encoder-decoder pretraining / translation batches from (source, target) text pairs.

    Training rows are pairs drawn at random; evaluation walks `validation_pairs` in order (at most
    `num_eval_batches` batches, all of them when None). Targets end with EOS (else SEP); decoder
    inputs start with `decoder_start_token_id` (default: BOS, else CLS, EOS or PAD). Keys:
    `input_ids`, `attention_mask` (B, S), `decoder_input_ids`, `decoder_attention_mask`, `labels` (B, L).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        tokenizer: TextTokenizer,
        batch_size: int,
        seed: int,
        max_source_length: int = 128,
        max_target_length: int = 128,
        validation_pairs: Sequence[tuple[str, str]] | None = None,
        num_eval_batches: int | None = None,
        decoder_start_token_id: int | None = None,
    ) -> None:
        if not pairs:
            raise DataError("no (source, target) pairs to train on")
        super().__init__(batch_size, seed, 0, False)
        self.pairs, self.validation_pairs = pairs, validation_pairs or []
        self.tokenizer = tokenizer
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.num_eval_batches = num_eval_batches
        self.end_id = _first_id(tokenizer, ("eos_token_id", "sep_token_id"), "end targets (EOS or SEP)")
        self.pad_id = _first_id(tokenizer, ("pad_token_id", "eos_token_id", "sep_token_id"), "pad")
        self.start_id = decoder_start_token_id if decoder_start_token_id is not None else _first_id(
            tokenizer, ("bos_token_id", "cls_token_id", "eos_token_id", "pad_token_id"), "start decoding")

    def _rows(self, generators: list[np.random.Generator], validation: bool) -> Arrays:
        return self._collate([self.pairs[int(g.integers(len(self.pairs)))] for g in generators])

    def eval_batches(self) -> Iterator[Batch]:
        count = 0
        for begin in range(0, len(self.validation_pairs), self.batch_size):
            if self.num_eval_batches is not None and count >= self.num_eval_batches:
                return
            count += 1
            yield to_tensors(self._collate(list(self.validation_pairs[begin: begin + self.batch_size])))

    def _collate(self, pairs: list[tuple[str, str]]) -> Arrays:
        sources = encode_texts(self.tokenizer, [s for s, _ in pairs], True, self.max_source_length)
        targets = encode_texts(self.tokenizer, [t for _, t in pairs], False, self.max_target_length - 1)
        return seq2seq_batch(sources, [[*t, self.end_id] for t in targets], self.pad_id, self.start_id)


def _first_id(tokenizer: TextTokenizer, roles: Sequence[str], purpose: str) -> int:
    """The first of the tokenizer's role ids that exists; DataError when none does."""
    for role in roles:
        token_id = getattr(tokenizer, role)
        if token_id is not None:
            return int(token_id)
    names = ", ".join(role.removesuffix("_token_id").upper() for role in roles)
    raise DataError(f"sequence-to-sequence data needs a token to {purpose}; the tokenizer has none of {names}")

