"""Text → model inputs for the tasks: counted truncation, pairs, offsets, word alignment, QA windows.

`TaskTokenizer` holds its own copy of the tokenizer's `tokenizers` backend, because the tasks
need what the backend gives and the batch API of `Tokenizer` does not return: whether a text
overflowed the limit (truncation is reported, never silent), which segment each token belongs
to (`sequence_ids`) and, for long QA contexts, the overlapping windows with a stride
(`only_second` truncation with overflow, each window carrying the full question and the
tokenizer's own special tokens).

Word-level labels (NER) are aligned through character offsets rather than the tokenizer's word
ids, so one rule serves WordPiece, byte-level BPE and anything else: the words are joined with
single spaces, each token is assigned the word its characters fall in, and only the first
sub-token of a word carries the word's label; later sub-tokens and special tokens get -100
(no loss, no prediction). For raw text, `split_words` finds the words.

Tokenizers whose pair template adds nothing between the segments (most decoders) get a newline
after the first segment, so the two texts stay apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer as Backend

from polyformer.errors import ConfigError, TokenizerError
from polyformer.tokenizers import Tokenizer
from polyformer.training.objectives import IGNORE_INDEX

Span = tuple[int, int]
SEGMENT_BREAK = "\n"
# words of raw text: URLs, @mentions / #hashtags, words with inner apostrophes or hyphens, clitics
# ('s, n't), numbers, and any other single non-space character (punctuation)
_WORD = re.compile(r"https?://\S+|[@#]?\w+(?:[-.]\w+)*|n't|'\w+|\S", re.UNICODE)


@dataclass
class Encoded:
    """One tokenised input (or one window of it)."""

    ids: list[int]
    type_ids: list[int]
    offsets: list[Span]  # character spans in the segment each token came from; (0, 0) for specials
    sequence_ids: list[int | None]  # 0 / 1 for the first / second segment, None for special tokens
    truncated: bool = False


class TaskTokenizer:
    """Tokenise task inputs up to `max_length` tokens (specials included)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise ConfigError(f"the tasks need a subword tokenizer with offsets (tokenizer.json, vocab.txt, GGUF, ...), "
                              f"got {type(tokenizer).__name__}")
        if not isinstance(max_length, int) or max_length < 4:
            raise ConfigError(f"max_length must be an integer >= 4, got {max_length!r}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._backend = Backend.from_str(tokenizer.backend.to_str())
        self._backend.no_padding()
        self._lock = threading.Lock()
        self.type_ids = tokenizer.returns_token_type_ids
        self.break_segments = tokenizer.num_special_tokens_to_add(pair=True) == 0
        pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) if i is not None), 0)
        self.pad_id = int(pad)

    def _encoded(self, encoding, overflowed: bool) -> Encoded:
        ids = list(encoding.ids)
        if not ids:  # an empty text under a tokenizer that adds no specials: one padding token to attend to
            return Encoded([self.pad_id], [0], [(0, 0)], [None], overflowed)
        return Encoded(ids, list(encoding.type_ids), [tuple(o) for o in encoding.offsets],
                       list(encoding.sequence_ids), overflowed)

    def _first(self, text: str) -> str:
        return text + SEGMENT_BREAK if self.break_segments else text

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[Encoded]:
        """Texts (or text pairs) truncated to max_length, longest segment first; `truncated` says which were cut."""
        inputs = list(texts) if pairs is None else [(self._first(a), b) for a, b in zip(texts, pairs)]
        with self._lock:
            self._backend.enable_truncation(self.max_length, strategy="longest_first")
            try:
                encodings = self._backend.encode_batch(inputs)
            except Exception as error:  # the Rust library raises plain Exception
                raise TokenizerError(f"cannot tokenise the input: {error}") from error
        return [self._encoded(e, bool(e.overflowing)) for e in encodings]

    def windows(self, questions: Sequence[str], contexts: Sequence[str], stride: int,
                max_question_tokens: int | None = None) -> list[tuple[int, Encoded]]:
        """(example index, window) for every window of every (question, context) pair.

        Each window holds the question (cut to `max_question_tokens`, default half the limit;
        `truncated` marks a cut question) and a slice of the context; consecutive slices overlap
        by `stride` tokens, so an answer near a window edge is whole in the next one.
        """
        limit = max_question_tokens or self.max_length // 2
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=True) - limit
        if not 0 <= stride < room:
            raise ConfigError(f"stride={stride} must be >= 0 and below the context room of a window "
                              f"({room} tokens at max_length={self.max_length}); lower --stride or raise --max-length")
        cut = [self.clip(question, limit) for question in questions]
        out: list[tuple[int, Encoded]] = []
        with self._lock:
            self._backend.enable_truncation(self.max_length, stride=stride, strategy="only_second")
            try:
                encodings = self._backend.encode_batch([(self._first(q), c) for (q, _), c in zip(cut, contexts)])
            except Exception as error:
                raise TokenizerError(f"cannot tokenise the question/context pairs: {error}") from error
        for index, (encoding, (_, clipped)) in enumerate(zip(encodings, cut)):
            for window in [encoding, *encoding.overflowing]:
                out.append((index, self._encoded(window, clipped)))
        return out

    def clip(self, text: str, limit: int) -> tuple[str, bool]:
        """The text cut after its first `limit` tokens, and whether it was cut."""
        with self._lock:
            self._backend.no_truncation()
            encoding = self._backend.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= limit:
            return text, False
        return text[: encoding.offsets[limit - 1][1]], True


# ---- words ------------------------------------------------------------------------------------
def split_words(text: str) -> list[Span]:
    """Character spans of the words of raw text (see _WORD): what NER labels at prediction time."""
    return [match.span() for match in _WORD.finditer(text)]


def join_words(words: Sequence[str]) -> tuple[str, list[Span]]:
    """The words joined by single spaces, and each word's span in that text."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def token_words(encoded: Encoded, spans: Sequence[Span], text_length: int) -> list[int | None]:
    """The word each token belongs to (by its characters), None for specials and pure whitespace."""
    owner = [-1] * (text_length + 1)
    for index, (start, end) in enumerate(spans):
        owner[start:end] = [index] * (end - start)
    words: list[int | None] = []
    for (start, end), segment in zip(encoded.offsets, encoded.sequence_ids):
        word = next((owner[c] for c in range(start, min(end, text_length)) if owner[c] >= 0), None) if segment is not None else None
        words.append(word)
    return words


def first_subtokens(words: Sequence[int | None]) -> list[int | None]:
    """For each token, its word when it is that word's first token, else None."""
    seen: set[int] = set()
    firsts: list[int | None] = []
    for word in words:
        if word is None or word in seen:
            firsts.append(None)
        else:
            seen.add(word)
            firsts.append(word)
    return firsts


def align_labels(words: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels: the word's label on its first sub-token, IGNORE_INDEX everywhere else."""
    return [IGNORE_INDEX if word is None else word_labels[word] for word in first_subtokens(words)]
