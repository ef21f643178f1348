"""Collators: MLM masking statistics, NSP pairs, causal packing, document positions, seq2seq shifting."""

from __future__ import annotations

import numpy as np
import pytest

from polyformer.data.collators import (
    IGNORE_INDEX,
    DocumentLayout,
    MLMTokens,
    build_segments,
    document_positions,
    document_starts,
    mask_tokens,
    pack_blocks,
    random_tokens,
    sample_nsp_spans,
    separator_starts,
    seq2seq_batch,
    word_start_table,
)
from polyformer.errors import DataError

VOCAB = 1000
SPECIAL = (0, 1, 2, 3, 4)  # pad, unk, cls, sep, mask
MASK_ID = 4
IDS = MLMTokens(vocab_size=VOCAB, cls_id=2, sep_id=3, pad_id=0, mask_id=MASK_ID, special_ids=SPECIAL)


def _fixed_sequence(draws: int) -> np.ndarray:
    """The same 100-token row `draws` times: [CLS] 97 ordinary ids [SEP] [PAD]."""
    row = np.concatenate([[2], np.arange(100, 197), [3], [0]])
    return np.tile(row, (draws, 1))


def test_mask_tokens_selects_15_percent_then_80_10_10() -> None:
    ids = _fixed_sequence(2000)
    special = np.isin(ids, SPECIAL)
    inputs, labels = mask_tokens(ids, special, VOCAB, MASK_ID, np.random.default_rng(0), special_ids=SPECIAL)
    selected = labels != IGNORE_INDEX
    assert selected[~special].mean() == pytest.approx(0.15, abs=0.01)
    assert np.array_equal(labels[selected], ids[selected])
    masked = inputs[selected] == MASK_ID
    unchanged = inputs[selected] == ids[selected]
    randomised = ~masked & ~unchanged
    assert masked.mean() == pytest.approx(0.8, abs=0.02)
    assert randomised.mean() == pytest.approx(0.1, abs=0.02)
    assert unchanged.mean() == pytest.approx(0.1, abs=0.02)
    # special tokens are never selected, masked or replaced, and never come in as random tokens
    assert not selected[special].any()
    assert np.array_equal(inputs[special], ids[special])
    assert not np.isin(inputs[selected][randomised], SPECIAL).any()
    # nothing outside the selection changes
    assert np.array_equal(inputs[~selected], ids[~selected])


def test_whole_word_masking_masks_every_piece_of_a_word() -> None:
    ids = _fixed_sequence(3000)
    special = np.isin(ids, SPECIAL)
    starts = np.zeros_like(ids, dtype=bool)
    starts[:, ::3] = True  # words of three pieces (the specials at the ends are their own words)
    starts[:, -3:] = True
    inputs, labels = mask_tokens(ids, special, VOCAB, MASK_ID, np.random.default_rng(1),
                                 word_starts=starts, special_ids=SPECIAL)
    selected = labels != IGNORE_INDEX
    words = selected[:, 3:96].reshape(len(ids), -1, 3)  # 31 whole three-piece words per row
    assert np.all(words.all(axis=2) | ~words.any(axis=2))
    assert words[:, :, 0].mean() == pytest.approx(0.15, abs=0.01)
    assert not selected[special].any()


def test_word_start_table_reads_wordpiece_and_byte_level_vocabularies() -> None:
    wordpiece = word_start_table({"[CLS]": 0, "play": 1, "##ing": 2, "##s": 3, "run": 4}, 5, [0])
    assert wordpiece.tolist() == [True, True, False, False, True]
    byte_level = word_start_table({"<|endoftext|>": 0, "Ġplay": 1, "ing": 2, "Ġrun": 3}, 4, [0])
    assert byte_level.tolist() == [True, True, False, True]


def test_random_tokens_are_uniform_over_non_special_ids() -> None:
    draws = random_tokens(np.random.default_rng(2), (20_000,), 10, [0, 3, 9])
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [1, 2, 4, 5, 6, 7, 8]
    assert counts.min() / counts.max() > 0.9


def _layout(doc_lengths: list[int], line_length: int = 5) -> DocumentLayout:
    """Documents of the given lengths, each followed by one separator, lines every `line_length` tokens."""
    offsets = np.concatenate([[0], np.cumsum(np.asarray(doc_lengths) + 1)])
    lines = np.concatenate([np.arange(start, start + length, line_length)
                            for start, length in zip(offsets[:-1], doc_lengths)])
    return DocumentLayout(offsets, offsets[1:] - 1, lines)


def test_nsp_labels_are_balanced_and_random_b_comes_from_another_document() -> None:
    layout = _layout([40, 200, 17, 90, 300, 60])
    generator = np.random.default_rng(3)
    labels = []
    for _ in range(3000):
        spans = sample_nsp_spans(layout, 29, generator)
        (a0, a1), (b0, b1) = spans.a, spans.b
        doc_a, doc_b = (int(np.searchsorted(layout.doc_offsets, x, side="right")) - 1 for x in (a0, b0))
        assert a0 < a1 and b0 < b1 and (a1 - a0) + (b1 - b0) <= 29
        assert a1 <= layout.doc_ends[doc_a] and b1 <= layout.doc_ends[doc_b]  # never a separator
        assert a0 in layout.line_offsets
        if spans.label == 0:
            assert b0 == a1 and doc_a == doc_b
        else:
            assert doc_b != doc_a and b0 in layout.line_offsets
        labels.append(spans.label)
    assert np.mean(labels) == pytest.approx(0.5, abs=0.03)


def test_nsp_needs_two_documents() -> None:
    with pytest.raises(DataError, match="2 or more documents"):
        sample_nsp_spans(_layout([50]), 20, np.random.default_rng(0))


def test_build_segments_lays_out_cls_a_sep_b_sep_with_types_and_truncation() -> None:
    row = build_segments(np.array([10, 11, 12]), np.array([20, 21]), IDS, 9)
    assert row["input_ids"].tolist() == [2, 10, 11, 12, 3, 20, 21, 3, 0]
    assert row["token_type_ids"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert row["attention_mask"].tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 0]
    short = build_segments(np.arange(10, 20), np.arange(20, 23), IDS, 8)  # longest segment loses its end
    assert short["input_ids"].tolist() == [2, 10, 11, 3, 20, 21, 22, 3]
    single = build_segments(np.array([10, 11]), None, IDS, 5)
    assert single["input_ids"].tolist() == [2, 10, 11, 3, 0]
    assert single["token_type_ids"].tolist() == [0] * 5


def test_packing_keeps_every_token_exactly_once() -> None:
    block = 16
    stream = np.random.default_rng(4).permutation(block * 12 + 1)  # distinct ids, an exact fit
    batch = pack_blocks(stream, block)
    assert batch["input_ids"].shape == batch["labels"].shape == (12, block)
    inputs = batch["input_ids"].ravel()
    assert np.array_equal(inputs, stream[:-1])  # every token once, in order, none repeated
    assert np.array_equal(batch["labels"].ravel(), stream[1:])  # each label is the next token
    assert np.array_equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])


def test_packing_a_stream_shorter_than_a_block_is_an_error() -> None:
    with pytest.raises(DataError, match="has 10 tokens; one block needs 17"):
        pack_blocks(np.arange(10), 16)


def test_document_ids_and_positions_restart_after_each_eos() -> None:
    eos = 0
    ids = np.array([[5, 6, eos, 7, 8, 9, eos, 4], [eos, 1, 2, 3, 4, 5, 6, 7]])
    document_ids, position_ids = document_positions(separator_starts(ids, eos))
    assert document_ids.tolist() == [[0, 0, 0, 1, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1, 1, 1]]
    assert position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], [0, 0, 1, 2, 3, 4, 5, 6]]
    # the same flags from a shard's document offsets (documents end with their EOS)
    positions = np.array([[10, 11, 12, 13, 14, 15, 16, 17]])
    from_offsets = document_starts(positions, np.array([0, 13, 17, 30]))
    assert np.array_equal(from_offsets, separator_starts(np.array([[5, 6, eos, 7, 8, 9, eos, 4]]), eos))


def test_seq2seq_batch_shifts_targets_right_and_ignores_padding() -> None:
    batch = seq2seq_batch([[5, 6, 7], [8]], [[9, 10, 2], [11, 2]], pad_id=0, decoder_start_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["decoder_input_ids"].tolist() == [[1, 9, 10], [1, 11, 0]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[9, 10, 2], [11, 2, IGNORE_INDEX]]
