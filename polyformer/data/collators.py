"""The data side of every pretraining objective, as small pure functions over numpy arrays.

Randomness always comes from an explicit `numpy.random.Generator`, so a batch is a function of
its inputs and the generator's seed (what makes `train_batch(step, ...)` reproducible).

- MLM (`mask_tokens`): BERT's 15% selection, then 80% [MASK] / 10% random token / 10% unchanged;
  whole-word option; labels are IGNORE_INDEX (-100) where nothing is predicted.
- NSP (`sample_nsp_spans`, `build_segments`): segment A is a run of lines of a document; B is its
  true continuation half of the time (label 0) or a run of lines of another document (label 1),
  as in Hugging Face's `next_sentence_label`; `[CLS] A [SEP] B [SEP]` with token types.
- Causal LM (`block_rows`, `shift_block`, `pack_blocks`, `document_positions`): blocks of T + 1
  tokens give inputs and next-token labels (nanoGPT style); document ids and per-document
  positions for attention confined to each packed document.
- Seq2seq (`seq2seq_batch`): padded sources, decoder inputs shifted right behind the start token,
  labels with IGNORE_INDEX on padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from polyformer.errors import DataError, TokenizerError

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
Generator = np.random.Generator


# --------------------------------------------------------------------------- ids an MLM needs
@dataclass(frozen=True)
class MLMTokens:
    """The tokenizer facts masking needs: vocabulary size, role ids, every special id, word starts."""

    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special_ids: tuple[int, ...]
    word_starts: np.ndarray | None = None  # (vocab_size,) bool: the token begins a word

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, whole_word: bool = False) -> MLMTokens:
        """Read the ids off a BERT-style tokenizer; TokenizerError when [CLS]/[SEP]/[MASK] are missing."""
        roles = {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id, "mask": tokenizer.mask_token_id}
        missing = [role for role, token_id in roles.items() if token_id is None]
        if missing:
            raise TokenizerError(f"masked-LM data needs {', '.join(missing)} token(s), which this tokenizer lacks")
        pad = tokenizer.pad_token_id
        special = tuple(sorted(tokenizer.special_ids | set(roles.values())))
        starts = word_start_table(tokenizer.get_vocab(), tokenizer.vocab_size, special) if whole_word else None
        return cls(tokenizer.vocab_size, roles["cls"], roles["sep"], special[0] if pad is None else pad,
                   roles["mask"], special, starts)


def word_start_table(vocab: Mapping[str, int], vocab_size: int, special_ids: Iterable[int] = ()) -> np.ndarray:
    """(vocab_size,) bool: True for tokens that begin a word.

    WordPiece vocabularies mark continuations with `##`; byte-level BPE marks word starts with a
    leading `Ġ` (a space). Other vocabularies (characters) treat every token as a word.
    """
    tokens = [""] * vocab_size
    for token, index in vocab.items():
        if 0 <= index < vocab_size:
            tokens[index] = token
    if any(t.startswith("##") for t in tokens):
        starts = np.fromiter((not t.startswith("##") for t in tokens), dtype=bool, count=vocab_size)
    elif any(t.startswith("Ġ") for t in tokens):
        starts = np.fromiter((t.startswith("Ġ") for t in tokens), dtype=bool, count=vocab_size)
    else:
        starts = np.ones(vocab_size, dtype=bool)
    starts[list(special_ids)] = True
    return starts


# --------------------------------------------------------------------------- masked LM
def special_positions(input_ids: np.ndarray, special_ids: Iterable[int]) -> np.ndarray:
    """Bool array shaped like `input_ids`: True where the id is special."""
    return np.isin(input_ids, np.fromiter(special_ids, dtype=np.int64))


def random_tokens(generator: Generator, shape: tuple[int, ...], vocab_size: int, special_ids: Iterable[int]) -> np.ndarray:
    """Uniform ids in [0, vocab_size) that are not special."""
    special = np.unique(np.fromiter(special_ids, dtype=np.int64))
    special = special[(special >= 0) & (special < vocab_size)]
    draws = generator.integers(0, vocab_size - len(special), size=shape)
    # the k-th non-special id is k plus the number of special ids at or below the result
    return draws + np.searchsorted(special - np.arange(len(special)), draws, side="right")


def mask_tokens(
    input_ids: np.ndarray,
    special_mask: np.ndarray,
    vocab_size: int,
    mask_id: int,
    generator: Generator,
    prob: float = 0.15,
    word_starts: np.ndarray | None = None,
    special_ids: Iterable[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking: returns (inputs, labels), both shaped like `input_ids` (..., T).

    Each position not in `special_mask` is selected with probability `prob`; when `word_starts`
    (bool, shaped like `input_ids`) is given, whole words are selected instead, a word being a
    start position and the continuations after it. Selected positions become [MASK] (80%), a
    random non-special token (10%, never one of `special_ids`) or stay (10%); labels hold the
    original id there and IGNORE_INDEX elsewhere.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    if word_starts is None:
        selected = generator.random(ids.shape) < prob
    else:
        starts = np.array(word_starts, dtype=bool, copy=True)
        starts[..., 0] = True  # a row never continues the previous row's word
        word_of = np.cumsum(starts.ravel()) - 1
        selected = (generator.random(int(word_of[-1]) + 1 if word_of.size else 0) < prob)[word_of].reshape(ids.shape)
    selected &= ~np.asarray(special_mask, dtype=bool)
    choice = generator.random(ids.shape)
    replace_mask = selected & (choice < 0.8)
    replace_random = selected & (choice >= 0.8) & (choice < 0.9)
    inputs = ids.copy()
    inputs[replace_mask] = mask_id
    inputs[replace_random] = random_tokens(generator, (int(replace_random.sum()),), vocab_size, special_ids)
    labels = np.where(selected, ids, IGNORE_INDEX)
    return inputs, labels


# --------------------------------------------------------------------------- next-sentence pairs
@dataclass(frozen=True)
class DocumentLayout:
    """Where documents and lines begin in a token stream (a shard's offsets)."""

    doc_offsets: np.ndarray  # (D + 1,) document d spans [doc_offsets[d], doc_offsets[d + 1])
    doc_ends: np.ndarray  # (D,) end of document d's own tokens (before its separator)
    line_offsets: np.ndarray  # (L,) sorted first token of each line; every document start is one


@dataclass(frozen=True)
class NSPSpans:
    """Token ranges [start, end) of segments A and B, and whether B is random (1) or next (0)."""

    a: tuple[int, int]
    b: tuple[int, int]
    label: int


def sample_nsp_spans(layout: DocumentLayout, max_tokens: int, generator: Generator) -> NSPSpans:
    """A and B for one next-sentence example, together at most `max_tokens` tokens.

    A document is drawn with probability proportional to its length; a window of up to
    `max_tokens` tokens starting at a line start is split at a random line start inside it (or a
    random token when it holds one line). A is the first part; B is the rest (label 0) or, with
    probability 1/2, a run of lines of another document filling the rest of the budget (label 1).
    """
    offsets, ends, lines = layout.doc_offsets, layout.doc_ends, layout.line_offsets
    if len(ends) < 2:
        raise DataError(f"next-sentence pairs need 2 or more documents, the corpus has {len(ends)}")
    total = int(offsets[-1])
    anchor = int(generator.integers(0, total))
    doc = _containing(offsets, anchor)
    doc_start, doc_end = int(offsets[doc]), int(ends[doc])
    start = _line_start(lines, max(doc_start, min(anchor, doc_end - max_tokens)))  # a full window if it fits
    stop = min(doc_end, start + max_tokens)
    inner = lines[np.searchsorted(lines, start, side="right"): np.searchsorted(lines, stop, side="left")]
    if len(inner):
        cut = int(inner[generator.integers(len(inner))])
    else:
        cut = int(generator.integers(start + 1, stop)) if stop - start >= 2 else stop
    if cut < stop and generator.random() < 0.5:
        return NSPSpans((start, cut), (cut, stop), 0)
    own = int(offsets[doc + 1]) - int(offsets[doc])
    position = int(generator.integers(0, total - own))
    position += own if position >= offsets[doc] else 0  # skip over document `doc`
    other = _containing(offsets, position)
    b_start = _line_start(lines, min(position, int(ends[other]) - 1))
    return NSPSpans((start, cut), (b_start, min(int(ends[other]), b_start + max_tokens - (cut - start))), 1)


def _containing(offsets: np.ndarray, position: int) -> int:
    return int(np.searchsorted(offsets, position, side="right")) - 1


def _line_start(lines: np.ndarray, position: int) -> int:
    """The last line start at or before `position`."""
    return int(lines[np.searchsorted(lines, position, side="right") - 1])


def truncate_pair(a: np.ndarray, b: np.ndarray | None, max_tokens: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop tokens from the end of the longer segment until both fit in `max_tokens` (as HF's longest_first)."""
    length_b = 0 if b is None else len(b)
    keep_a, keep_b = len(a), length_b
    while keep_a + keep_b > max_tokens:
        if keep_a >= keep_b:
            keep_a -= 1
        else:
            keep_b -= 1
    return a[:keep_a], None if b is None else b[:keep_b]


def build_segments(a: np.ndarray, b: np.ndarray | None, ids: MLMTokens, max_length: int) -> dict[str, np.ndarray]:
    """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, truncated and padded to `max_length`.

    Returns `input_ids`, `token_type_ids` (0 for CLS, A and its SEP; 1 for B and its SEP) and
    `attention_mask`, each (max_length,) int64.
    """
    budget = max_length - (2 if b is None else 3)
    if budget < 1:
        raise DataError(f"max_length {max_length} leaves no room for text between the special tokens")
    a, b = truncate_pair(np.asarray(a, dtype=np.int64), None if b is None else np.asarray(b, dtype=np.int64), budget)
    first = np.concatenate([[ids.cls_id], a, [ids.sep_id]])
    second = np.zeros(0, dtype=np.int64) if b is None else np.concatenate([b, [ids.sep_id]])
    length = len(first) + len(second)
    input_ids = np.full(max_length, ids.pad_id, dtype=np.int64)
    input_ids[:length] = np.concatenate([first, second])
    token_type_ids = np.zeros(max_length, dtype=np.int64)
    token_type_ids[len(first): length] = 1
    attention_mask = (np.arange(max_length) < length).astype(np.int64)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


# --------------------------------------------------------------------------- causal LM
def block_rows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, length) int64: tokens[s : s + length] for each start s (works on memory maps)."""
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length)  # (B, length)
    return np.asarray(tokens[index], dtype=np.int64)


def shift_block(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of T + 1 tokens -> `input_ids` (B, T) and next-token `labels` (B, T)."""
    return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}


def pack_blocks(tokens: np.ndarray, block_size: int) -> dict[str, np.ndarray]:
    """Consecutive blocks of a stream: row k reads tokens[kT : kT + T + 1], so every token is an input once.

    The tail that does not fill a block is dropped; DataError when not even one block fits.
    """
    count = (len(tokens) - 1) // block_size
    if count < 1:
        raise DataError(f"the corpus has {len(tokens)} tokens; one block needs {block_size + 1}")
    return shift_block(block_rows(tokens, np.arange(count) * block_size, block_size + 1))


def document_starts(positions: np.ndarray, doc_offsets: np.ndarray) -> np.ndarray:
    """Bool, shaped like `positions` (indices into the stream): True where a document begins."""
    return np.isin(positions, doc_offsets)


def separator_starts(input_ids: np.ndarray, separator_id: int) -> np.ndarray:
    """Bool (B, T): True at each position right after a separator (EOS) token."""
    starts = np.zeros(input_ids.shape, dtype=bool)
    starts[:, 1:] = input_ids[:, :-1] == separator_id
    return starts


def document_positions(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(document_ids, position_ids), both (B, T) int64, from document-start flags (B, T).

    Each row's first position starts a document; ids count documents within the row, positions
    count from 0 again at every start.
    """
    flags = np.array(starts, dtype=bool, copy=True)
    flags[:, 0] = True
    document_ids = np.cumsum(flags, axis=1) - 1
    steps = np.arange(flags.shape[1])
    last_start = np.maximum.accumulate(np.where(flags, steps, 0), axis=1)
    return document_ids.astype(np.int64), (steps - last_start).astype(np.int64)


# --------------------------------------------------------------------------- sequence to sequence
def pad_rows(rows: Sequence[Sequence[int]], pad_value: int, length: int | None = None,
             side: Literal["right", "left"] = "right") -> tuple[np.ndarray, np.ndarray]:
    """(values, mask), both (B, L) int64, L = `length` or the longest row; mask is 1 on real tokens.

    Rows are padded after their tokens, or before them with side="left" (decoder prompts, whose
    next token follows the last column); a row longer than `length` keeps its first tokens.
    """
    width = max((len(row) for row in rows), default=0) if length is None else length
    values = np.full((len(rows), width), pad_value, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        kept = list(row)[:width]
        span = slice(width - len(kept), width) if side == "left" else slice(0, len(kept))
        values[index, span] = kept
        mask[index, span] = 1
    return values, mask


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, side: Literal["right", "left"] = "right",
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`pad_rows` as a model's batch: input_ids and attention_mask, (B, longest) int64 on `device`."""
    import torch  # imported on first use: the numpy collators do not need it

    values, mask = pad_rows(rows, pad_id, side=side)
    return torch.from_numpy(values).to(device), torch.from_numpy(mask).to(device)


def seq2seq_batch(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int, decoder_start_id: int
) -> dict[str, np.ndarray]:
    """Encoder inputs and teacher-forced decoder inputs for (source, target) id rows.

    `targets` should end with the end-of-sequence id. decoder_input_ids = [start] + target[:-1];
    labels = target with IGNORE_INDEX on padding. Shapes: (B, S) for the source keys, (B, L) else.
    """
    if len(sources) != len(targets):
        raise DataError(f"{len(sources)} sources but {len(targets)} targets")
    input_ids, attention_mask = pad_rows(sources, pad_id)
    decoder_input_ids, decoder_attention_mask = pad_rows([[decoder_start_id, *t[:-1]] for t in targets], pad_id)
    labels, _ = pad_rows(targets, IGNORE_INDEX)
    return {
        "input_ids": input_ids, "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_attention_mask,
        "labels": labels,
    }
