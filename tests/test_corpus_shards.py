"""Corpus readers and splits, token shards (round trip, dtype, cache, corruption), the tokenizer CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyformer.cli.main import main
from polyformer.data import shards
from polyformer.data.corpus import held_out, read_documents, read_pairs
from polyformer.data.shards import TokenShard, build_shard, token_dtype, write_shard
from polyformer.errors import DataError
from polyformer.tokenizers import CharTokenizer, Tokenizer, load_tokenizer, train_wordpiece

# Fixed by SPLIT_SEED: changing the split would silently change every reported validation loss.
SHAKESPEARE_VALIDATION = ["henry_iv_part_2", "midsummer_nights_dream", "much_ado_about_nothing", "twelfth_night"]

DOCS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles",
    "And by opposing end them. To die: to sleep;\nNo more; and by a sleep to say we end",
    "The heart-ache and the thousand natural shocks\nThat flesh is heir to.",
]


@pytest.fixture(scope="module")
def wordpiece() -> Tokenizer:
    return train_wordpiece(DOCS * 3, 120, min_frequency=1)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- readers
def test_txt_documents_are_blank_line_separated_blocks(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.txt", f"{DOCS[0]}\n\n\n{DOCS[1]}\n   \n{DOCS[2]}\n")
    assert list(read_documents(file, split="all")) == DOCS[:3]


def test_jsonl_and_csv_records(tmp_path: Path) -> None:
    lines = [json.dumps({"text": DOCS[0]}), "", json.dumps({"text_a": "first", "text_b": "second"})]
    jsonl = _write(tmp_path / "c.jsonl", "\n".join(lines) + "\n")
    assert list(read_documents(jsonl, split="all")) == [DOCS[0], "first\nsecond"]
    csv_file = _write(tmp_path / "c.csv", 'id,body\n1,"one, with comma"\n2,two\n')
    assert list(read_documents([str(csv_file)], split="all", text_field="body")) == ["one, with comma", "two"]
    pairs = _write(tmp_path / "p.jsonl", '{"text_a": "hello", "text_b": "bonjour"}\n')
    assert list(read_pairs(pairs, split="all")) == [("hello", "bonjour")]


def test_malformed_jsonl_line_names_the_line(tmp_path: Path) -> None:
    file = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        list(read_documents(file, split="all"))
    missing = _write(tmp_path / "missing.jsonl", '{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"missing\.jsonl:2: missing field 'text'"):
        list(read_documents(missing, split="all"))
    csv_file = _write(tmp_path / "c.csv", "body\nx\n")
    with pytest.raises(DataError, match=r"c\.csv:2: missing field 'text'"):
        list(read_documents(csv_file, split="all"))


def test_empty_corpus_and_unknown_sources_are_errors(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.txt", "\n  \n\n")
    with pytest.raises(DataError, match=r"empty\.txt: no documents"):
        list(read_documents(empty, split="all"))
    one = _write(tmp_path / "one.txt", "a single document")
    with pytest.raises(DataError, match=r"one\.txt: no documents in its validation split"):
        list(read_documents(one, split="validation"))
    with pytest.raises(DataError, match="not a catalog corpus"):
        read_documents("no-such-corpus")
    with pytest.raises(DataError, match="unsupported corpus file"):
        read_documents(_write(tmp_path / "x.md", "text"))


def test_split_by_document_is_deterministic_and_never_empty(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.txt", "\n\n".join(f"document {i}" for i in range(25)))
    train, validation = (list(read_documents(file, split=s)) for s in ("train", "validation"))
    assert len(validation) == 2 and len(train) == 23
    assert sorted(train + validation) == sorted(f"document {i}" for i in range(25))
    assert validation == list(read_documents(file, split="validation"))
    for n in range(2, 30):
        keys = [str(i) for i in range(n)]
        assert 1 <= len(held_out(keys)) < n


def test_shakespeare_split_by_work(shakespeare_dir: Path, shakespeare_works: list[tuple[str, str]]) -> None:
    texts = dict(shakespeare_works)
    validation = list(read_documents("shakespeare", split="validation"))
    assert validation == [texts[name] for name in SHAKESPEARE_VALIDATION]
    train = list(read_documents("shakespeare", split="train"))
    assert len(train) == 38 and not set(train) & set(validation)


# --------------------------------------------------------------------------- shards
def test_shard_round_trip_matches_direct_tokenisation(tmp_path: Path, wordpiece: Tokenizer) -> None:
    shard = write_shard(DOCS, wordpiece, tmp_path / "shard", source="docs")
    sep = wordpiece.sep_token_id
    direct = np.concatenate([[*wordpiece.encode(doc, add_special_tokens=False), sep] for doc in DOCS])
    assert isinstance(shard.tokens, np.memmap) and shard.tokens.dtype == np.uint16
    assert np.array_equal(shard.tokens, direct)
    assert shard.meta.num_docs == len(DOCS) and shard.meta.separator_id == sep
    for index, doc in enumerate(DOCS):
        assert wordpiece.decode(shard.document(index)) == wordpiece.decode(wordpiece.encode(doc))
        lines = [int(x) for x in shard.line_offsets if shard.doc_offsets[index] <= x < shard.doc_ends[index]]
        second = wordpiece.decode(shard.tokens[lines[1]: shard.doc_ends[index]])
        assert second == wordpiece.decode(wordpiece.encode(doc.split("\n")[1]))
    reopened = TokenShard.open(tmp_path / "shard")
    assert np.array_equal(reopened.tokens, shard.tokens) and reopened.meta == shard.meta


def test_large_vocabularies_are_stored_as_uint32(tmp_path: Path) -> None:
    assert token_dtype(65_535) == np.uint16 and token_dtype(65_536) == np.uint32
    chars = [chr(0x10000 + i) for i in range(70_000)]  # no surrogates in this range
    tokenizer = CharTokenizer(chars)
    text = chars[69_999] + chars[3] + chars[65_600]
    shard = write_shard([text], tokenizer, tmp_path / "wide")
    assert shard.tokens.dtype == np.uint32
    assert shard.tokens.tolist() == [69_999, 3, 65_600]  # no separator: characters have no EOS


def test_build_shard_caches_by_content_tokenizer_and_split(tmp_path: Path, wordpiece: Tokenizer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _write(tmp_path / "c.txt", "\n\n".join(DOCS * 3))
    first = build_shard(corpus, wordpiece, tmp_path / "cache")
    calls: list[str] = []
    monkeypatch.setattr(shards, "write_shard", lambda *a, **k: calls.append("write"))
    again = build_shard(corpus, wordpiece, tmp_path / "cache")
    assert again.directory == first.directory and not calls
    monkeypatch.undo()
    validation = build_shard(corpus, wordpiece, tmp_path / "cache", split="validation")
    assert validation.directory != first.directory and validation.meta.num_docs == 1
    _write(corpus, "\n\n".join(DOCS * 2))
    assert build_shard(corpus, wordpiece, tmp_path / "cache").directory != first.directory


def test_truncated_or_missing_shard_files_are_named(tmp_path: Path, wordpiece: Tokenizer) -> None:
    shard = write_shard(DOCS, wordpiece, tmp_path / "shard")
    tokens = shard.directory / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"tokens\.bin: truncated"):
        TokenShard.open(shard.directory)
    with pytest.raises(DataError, match=r"meta\.json: missing"):
        TokenShard.open(tmp_path)


def test_char_tokenizer_round_trip(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train(DOCS)
    assert list(tokenizer.chars) == sorted(set("".join(DOCS)))
    assert tokenizer.decode(tokenizer.encode(DOCS[0])) == DOCS[0]
    assert tokenizer.encode("a\u00e9b") == tokenizer.encode("ab")  # unknown characters are skipped
    loaded = CharTokenizer.load(tokenizer.save(tmp_path / "chars"))
    assert loaded.chars == tokenizer.chars and loaded.vocab_size == tokenizer.vocab_size


# --------------------------------------------------------------------------- CLI
def test_tokenizer_cli_trains_on_a_tiny_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _write(tmp_path / "tiny.txt", "\n\n".join(DOCS * 3))
    with pytest.raises(SystemExit) as done:
        main(["tokenizer", "train", "--kind", "wordpiece", "--vocab-size", "90", "--data", str(corpus),
              "--out", str(tmp_path / "tok")])
    assert done.value.code == 0
    tokenizer = load_tokenizer(tmp_path / "tok")
    assert tokenizer.mask_token_id is not None and 40 < tokenizer.vocab_size <= 90
    assert tokenizer.decode(tokenizer.encode("to be or not to be")) == "to be or not to be"
    with pytest.raises(SystemExit) as failed:
        main(["tokenizer", "train", "--kind", "bpe", "--data", str(corpus), "--out", str(tmp_path / "b")])
    assert failed.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --vocab-size is required for --kind bpe"
