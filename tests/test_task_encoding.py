"""Task encoding: first-sub-token label alignment, offsets back to characters, QA windows with a stride."""

from __future__ import annotations

import pytest
from task_tiny import bpe_tokenizer

import polyformer as pf
from polyformer.errors import ConfigError
from polyformer.tasks.encoding import TaskTokenizer, align_labels, join_words, split_words, token_words
from polyformer.tasks.qa import QAExample, answer_tokens, best_span, context_range
from polyformer.training.objectives import IGNORE_INDEX


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return pf.load_tokenizer(minilm_dir)


def test_first_sub_token_carries_the_word_label(minilm):
    words = ["@paulwalk", "visited", "Elsinore", "castle"]
    labels = [0, 0, 5, 6]
    text, spans = join_words(words)
    encoded = TaskTokenizer(minilm, 32).encode([text])[0]
    tokens = minilm.convert_ids_to_tokens(encoded.ids)
    assert tokens == ["[CLS]", "@", "paul", "##walk", "visited", "el", "##sin", "##ore", "castle", "[SEP]"]
    owners = token_words(encoded, spans, len(text))
    assert owners == [None, 0, 0, 0, 1, 2, 2, 2, 3, None]
    assert align_labels(owners, labels) == [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX, 0, 5, IGNORE_INDEX,
                                            IGNORE_INDEX, 6, IGNORE_INDEX]


def test_byte_level_offsets_map_tokens_to_words_without_the_leading_space():
    tokenizer = bpe_tokenizer(["the prince of denmark speaks", "the prince"])
    words = ["the", "prince", "of", "denmark"]
    text, spans = join_words(words)
    encoded = TaskTokenizer(tokenizer, 64).encode([text])[0]
    owners = token_words(encoded, spans, len(text))
    assert None not in owners  # a decoder's BPE adds no special tokens, and 'Ġprince' belongs to 'prince'
    assert sorted(set(owners)) == [0, 1, 2, 3]
    pieces = {}
    for (start, end), word in zip(encoded.offsets, owners):
        pieces.setdefault(word, []).append(text[start:end].strip())
    assert ["".join(pieces[i]) for i in range(4)] == words
    firsts = align_labels(owners, [1, 2, 3, 4])
    assert [label for label in firsts if label != IGNORE_INDEX] == [1, 2, 3, 4]


def test_split_words_for_raw_text():
    text = "@paulwalk It's the Empire State Building, don't you know? http://x.co/a #NYC"
    assert [text[a:b] for a, b in split_words(text)] == [
        "@paulwalk", "It", "'s", "the", "Empire", "State", "Building", ",", "don", "'t", "you", "know", "?",
        "http://x.co/a", "#NYC"]
    assert split_words("") == [] and split_words("   ") == []


def test_truncation_is_reported_not_silent(minilm):
    encoder = TaskTokenizer(minilm, 8)
    short, long, empty = encoder.encode(["a short text", "one two three four five six seven eight nine", ""])
    assert not short.truncated and not empty.truncated and long.truncated
    assert len(long.ids) == 8 and long.ids[-1] == minilm.sep_token_id
    assert empty.ids == [minilm.cls_token_id, minilm.sep_token_id]


def test_pairs_get_a_line_break_when_the_template_adds_nothing():
    tokenizer = bpe_tokenizer(["first line", "second line"])
    encoder = TaskTokenizer(tokenizer, 64)
    assert encoder.break_segments
    (encoded,) = encoder.encode(["first line"], ["second line"])
    assert tokenizer.decode(encoded.ids) == "first line\nsecond line"
    assert set(encoded.sequence_ids) == {0, 1}
    (empty,) = encoder.encode([""])
    assert empty.ids == [encoder.pad_id]  # an empty text still has one position to attend to


def test_qa_windows_overlap_by_the_stride_and_every_answer_fits_one(minilm):
    context = " ".join(f"word{i}" for i in range(120)) + " the answer is Elsinore castle at night ."
    question = "where is the answer?"
    encoder = TaskTokenizer(minilm, 48)
    windows = encoder.windows([question], [context], stride=10)
    assert len(windows) > 3 and {index for index, _ in windows} == {0}
    question_ids = minilm.encode(question, add_special_tokens=False)
    slices = []
    for _, window in windows:
        assert len(window.ids) <= 48
        assert window.ids[1: 1 + len(question_ids)] == question_ids  # every window carries the whole question
        first, last = context_range(window)
        slices.append(window.offsets[first: last + 1])
    for before, after in zip(slices, slices[1:]):
        assert before[-10:] == after[:10]  # consecutive windows share exactly `stride` tokens
    start = context.index("Elsinore castle")
    end = start + len("Elsinore castle")
    found = [(window, answer_tokens(window, start, end)) for _, window in windows if answer_tokens(window, start, end) != (0, 0)]
    assert found
    for window, (first, last) in found:
        assert context[window.offsets[first][0]: window.offsets[last][1]] == "Elsinore castle"
    outside = [w for _, w in windows if answer_tokens(w, start, end) == (0, 0)]
    assert outside  # windows without the whole answer point at position 0


def test_best_span_maps_logits_back_to_characters(minilm):
    import torch

    context = "It is the east, and Juliet is the sun!"
    (_, window), = TaskTokenizer(minilm, 64).windows(["Who is the sun?"], [context], stride=8)
    start_char = context.index("Juliet")
    first, last = answer_tokens(window, start_char, start_char + len("Juliet"))
    start_logits, end_logits = torch.zeros(len(window.ids)), torch.zeros(len(window.ids))
    start_logits[first], end_logits[last] = 10.0, 10.0
    start_logits[1] = end_logits[1] = 50.0  # a question token: never an answer
    span = best_span(window, start_logits, end_logits, max_tokens=30)
    assert context[span["start"]: span["end"]] == "Juliet" and 0 < span["score"] <= 1
    end_logits[last] = -10.0
    end_logits[first - 1] = 20.0  # an end before the start is not a span
    span = best_span(window, start_logits, end_logits, max_tokens=30)
    assert span["start"] <= span["end"]


def test_stride_must_leave_room(minilm):
    encoder = TaskTokenizer(minilm, 32)
    with pytest.raises(ConfigError, match="stride=20 must be >= 0 and below the context room"):
        encoder.windows(["q"], ["c"], stride=20)
    long_question = " ".join(["why"] * 40)
    (_, window), = encoder.windows([long_question], ["short context"], stride=4)
    assert window.truncated and context_range(window)[1] >= context_range(window)[0]
    assert QAExample("q", "c").answers == []
