"""Token shards: a corpus tokenised once into a memory-mapped file, with its document and line starts.

A shard is a folder:

    tokens.bin        every token id of every document, back to back (uint16 when the vocabulary
                      has at most 65,535 entries, else uint32), each document followed by the
                      tokenizer's separator (EOS, else SEP; none for tokenizers without either)
    doc_offsets.npy   int64 (num_docs + 1,): document d is tokens[doc_offsets[d]:doc_offsets[d+1]],
                      its separator (if any) last
    line_offsets.npy  int64 (num_lines,), sorted: the index of the first token of every line of
                      every document (document starts included); next-sentence pairs cut here
    meta.json         format, vocab size, dtype, counts, separator id, source, split, tokenizer hash

Documents are tokenised in batches of about a megabyte of text and appended to the file, so a
corpus is never held as Python lists of ids. The folder is written under a temporary name and
renamed into place, so a killed run never leaves half a shard. `build_shard` caches shards by a
hash of (corpus content or catalog pin, tokenizer, split).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyformer.data.corpus import Spec, Split, corpus_fingerprint, describe_spec, read_documents
from polyformer.errors import DataError
from polyformer.tokenizers import CharTokenizer, Tokenizer

TextTokenizer = Tokenizer | CharTokenizer

SHARD_FORMAT = 1
TOKENS_FILE = "tokens.bin"
DOC_OFFSETS_FILE = "doc_offsets.npy"
LINE_OFFSETS_FILE = "line_offsets.npy"
META_FILE = "meta.json"
_BATCH_CHARS = 1 << 20
_BATCH_DOCS = 512
_NEWLINE = 10


@dataclass(frozen=True)
class ShardMeta:
    """What `meta.json` records about a shard."""

    format: int
    vocab_size: int
    dtype: str
    num_tokens: int
    num_docs: int
    num_lines: int
    separator_id: int | None
    source: str
    split: str
    tokenizer: str


@dataclass(frozen=True)
class TokenShard:
    """An opened shard: `tokens` is memory-mapped, the offset arrays are in memory."""

    directory: Path
    meta: ShardMeta
    tokens: np.memmap  # (N,) uint16 | uint32
    doc_offsets: np.ndarray  # (D + 1,) int64
    line_offsets: np.ndarray  # (L,) int64

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> TokenShard:
        """Open a shard folder; DataError naming the file when it is missing, truncated or inconsistent."""
        folder = Path(directory)
        meta = _read_meta(folder / META_FILE)
        tokens_file = folder / TOKENS_FILE
        expected = meta.num_tokens * np.dtype(meta.dtype).itemsize
        actual = tokens_file.stat().st_size if tokens_file.is_file() else -1
        if actual != expected:
            found = "missing" if actual < 0 else f"{actual} bytes"
            raise DataError(f"{tokens_file}: truncated or corrupted shard ({found}, expected {expected} bytes)")
        tokens = np.memmap(tokens_file, dtype=meta.dtype, mode="r", shape=(meta.num_tokens,))
        doc_offsets = _read_offsets(folder / DOC_OFFSETS_FILE, meta.num_docs + 1, meta.num_tokens)
        line_offsets = _read_offsets(folder / LINE_OFFSETS_FILE, meta.num_lines, meta.num_tokens)
        if doc_offsets[0] != 0 or doc_offsets[-1] != meta.num_tokens:
            raise DataError(f"{folder / DOC_OFFSETS_FILE}: offsets do not span the {meta.num_tokens} tokens")
        return cls(folder, meta, tokens, doc_offsets, line_offsets)

    def __len__(self) -> int:
        return self.meta.num_tokens

    @property
    def num_docs(self) -> int:
        return self.meta.num_docs

    @property
    def doc_ends(self) -> np.ndarray:
        """(D,) int64: where each document's own tokens end (its separator excluded)."""
        has_separator = int(self.meta.separator_id is not None)
        return self.doc_offsets[1:] - has_separator

    def document(self, index: int) -> np.ndarray:
        """The tokens of document `index`, without its separator."""
        return self.tokens[self.doc_offsets[index]: self.doc_ends[index]]


# --------------------------------------------------------------------------- tokenizer helpers
def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65,535), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65_535 else np.uint32)


def separator_id(tokenizer: TextTokenizer) -> int | None:
    """The token put between documents: EOS, else SEP, else none."""
    eos = tokenizer.eos_token_id
    return eos if eos is not None else tokenizer.sep_token_id


def encode_texts(
    tokenizer: TextTokenizer, texts: list[str], add_special_tokens: bool = False, max_length: int | None = None
) -> list[list[int]]:
    """Ids of a batch of texts (batched in the tokenizer's own code), truncated to `max_length` if given."""
    if isinstance(tokenizer, CharTokenizer):
        return [ids[:max_length] for ids in tokenizer.encode_batch(texts)]
    return tokenizer(texts, padding=False, truncation=max_length is not None, max_length=max_length,
                     add_special_tokens=add_special_tokens, return_tensors=None)["input_ids"]


def tokenizer_fingerprint(tokenizer: TextTokenizer) -> str:
    """A hash of everything that decides a tokenizer's ids (model, normalisation, special tokens)."""
    if isinstance(tokenizer, CharTokenizer):
        text = json.dumps(tokenizer.config(), sort_keys=True)
    else:
        backend = json.loads(tokenizer.backend.to_str())
        backend.pop("truncation", None)  # per-call state, not part of the tokenizer's identity
        backend.pop("padding", None)
        text = json.dumps([backend, tokenizer.config()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _documents_with_lines(tokenizer: TextTokenizer, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, first token of each line) per text; line starts are found from character offsets."""
    if isinstance(tokenizer, CharTokenizer):
        newline = tokenizer.token_to_id("\n")
        for ids in tokenizer.encode_batch(texts):
            array = np.asarray(ids, dtype=np.int64)
            yield array, _line_starts(np.flatnonzero(array == newline) + 1, len(array))
        return
    batch = tokenizer(texts, padding=False, truncation=False, add_special_tokens=False,
                      return_offsets=True, return_tensors=None)
    for text, ids, offsets in zip(texts, batch["input_ids"], batch["offset_mapping"]):
        starts = np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))
        newlines = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == _NEWLINE)
        yield np.asarray(ids, dtype=np.int64), _line_starts(np.searchsorted(starts, newlines + 1), len(ids))


def _line_starts(candidates: np.ndarray, length: int) -> np.ndarray:
    """Sorted unique token indices in [0, length) that begin a line; 0 always included."""
    return np.unique(np.concatenate([[0], candidates[candidates < length]])).astype(np.int64)


# --------------------------------------------------------------------------- writing
def write_shard(
    documents: Iterable[str],
    tokenizer: TextTokenizer,
    directory: str | os.PathLike[str],
    *,
    source: str = "",
    split: str = "all",
    replace: bool = True,
) -> TokenShard:
    """Tokenise `documents` into a shard at `directory`.

    A shard already there is replaced, or with `replace=False` kept (a concurrent writer of the
    same cached shard won the race) and the new one discarded.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        _write_files(documents, tokenizer, staged, source, split)
        _publish(staged, final, replace)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return TokenShard.open(final)


def _write_files(documents: Iterable[str], tokenizer: TextTokenizer, folder: Path, source: str, split: str) -> ShardMeta:
    dtype = token_dtype(tokenizer.vocab_size)
    separator = separator_id(tokenizer)
    tail = np.asarray([] if separator is None else [separator], dtype=dtype)
    doc_offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    line_offsets: list[np.ndarray] = []
    written = 0
    with (folder / TOKENS_FILE).open("wb") as handle:
        for texts in _batches(documents):
            ends: list[int] = []
            for ids, lines in _documents_with_lines(tokenizer, texts):
                if len(ids) == 0:
                    continue
                ids.astype(dtype).tofile(handle)
                tail.tofile(handle)
                line_offsets.append(lines + written)
                written += len(ids) + len(tail)
                ends.append(written)
            doc_offsets.append(np.asarray(ends, dtype=np.int64))
    offsets = np.concatenate(doc_offsets)
    if written == 0:
        raise DataError(f"{source or 'corpus'}: the documents give no tokens")
    lines = np.concatenate(line_offsets)
    np.save(folder / DOC_OFFSETS_FILE, offsets)
    np.save(folder / LINE_OFFSETS_FILE, lines)
    meta = ShardMeta(SHARD_FORMAT, tokenizer.vocab_size, dtype.name, written, len(offsets) - 1, len(lines),
                     separator, source, split, tokenizer_fingerprint(tokenizer))
    (folder / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")
    return meta


def _batches(documents: Iterable[str]) -> Iterator[list[str]]:
    """Groups of documents of about _BATCH_CHARS characters (at most _BATCH_DOCS documents)."""
    batch: list[str] = []
    size = 0
    for text in documents:
        batch.append(text)
        size += len(text)
        if size >= _BATCH_CHARS or len(batch) >= _BATCH_DOCS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _publish(staged: Path, final: Path, replace: bool) -> None:
    """Rename the finished folder into place, replacing (or keeping) a shard at the same path."""
    if final.exists() and replace:
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.replace(staged, final)
    except OSError:
        if not final.exists():
            raise


# --------------------------------------------------------------------------- reading
def _read_meta(file: Path) -> ShardMeta:
    try:
        data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        meta = ShardMeta(**data)
    except FileNotFoundError:
        raise DataError(f"{file}: missing; {file.parent} is not a token shard") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{file}: unreadable shard metadata ({exc})") from None
    if meta.format != SHARD_FORMAT:
        raise DataError(f"{file}: shard format {meta.format}, this version reads {SHARD_FORMAT}; rebuild the shard")
    return meta


def _read_offsets(file: Path, length: int, num_tokens: int) -> np.ndarray:
    try:
        offsets = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: unreadable offsets ({exc})") from None
    if offsets.shape != (length,) or (length and (np.any(np.diff(offsets) < 0) or offsets.max() > num_tokens)):
        raise DataError(f"{file}: corrupted offsets (expected {length} sorted values up to {num_tokens})")
    return offsets.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- cache
def default_shard_dir() -> Path:
    """Where `build_shard` caches shards by default: `<polyformer cache>/shards`."""
    from polyformer.data.catalog import cache_dir

    return cache_dir() / "shards"


def build_shard(
    spec: Spec,
    tokenizer: TextTokenizer,
    cache_dir: str | os.PathLike[str] | None = None,
    split: Split = "train",
    text_field: str = "text",
) -> TokenShard:
    """The shard of `split` of a corpus, tokenised once and then reused from `cache_dir`.

    Under several processes, build on one (rank 0) and wait before the others call this.
    """
    key = hashlib.sha256("\n".join([
        str(SHARD_FORMAT), corpus_fingerprint(spec, text_field), tokenizer_fingerprint(tokenizer), split,
    ]).encode()).hexdigest()[:24]
    folder = Path(cache_dir) if cache_dir is not None else default_shard_dir()
    target = folder / f"{split}-{key}"
    if (target / META_FILE).is_file():
        return TokenShard.open(target)
    documents = read_documents(spec, split=split, text_field=text_field)
    return write_shard(documents, tokenizer, target, source=describe_spec(spec), split=split, replace=False)
