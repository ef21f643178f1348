"""Debian packages for the catalog: `apt-get download` into the cache, and the files inside a .deb.

A .deb is an `ar` archive holding `debian-binary`, `control.tar.*` and `data.tar.*`; the files a
package installs are the members of `data.tar.*`. Reading them here needs neither root nor
`dpkg`: the `ar` headers are parsed directly (a fixed 60-byte header per member) and the data
tarball is opened with `tarfile` (gzip, bzip2 or xz).

`apt-get download NAME=VERSION` fetches a package file into the current folder without root.
On a fresh machine apt's package lists can be empty, and then apt cannot find the package: as
root the download runs `apt-get update` once and tries again; otherwise the error says to run it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from polyformer.errors import CatalogError, OfflineError

Opener = Callable[[], BinaryIO]
AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
# what apt prints when its lists do not know the package (or the version asked for)
_NOT_IN_LISTS = ("unable to locate package", "can't select candidate version", "was not found",
                 "has no installation candidate")


def deb_files(archive: Path) -> Iterator[tuple[str, Opener]]:
    """(path, opener) for every regular file a .deb installs; paths without the leading './'."""
    data = _data_tarball(archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for member in tf:
                if member.isfile():
                    yield member.name.removeprefix("./"), (lambda m=member: _member(tf, m, archive))
    except tarfile.TarError as exc:
        raise CatalogError(f"{archive.name}: its data.tar is not readable ({exc}); only gzip, bzip2 and xz "
                           "compressed packages are supported") from exc


def _data_tarball(archive: Path) -> bytes:
    """The bytes of the `data.tar.*` member of a .deb (an `ar` archive)."""
    with archive.open("rb") as fh:
        if fh.read(len(AR_MAGIC)) != AR_MAGIC:
            raise CatalogError(f"{archive.name} is not a Debian package (no ar archive header)")
        while len(header := fh.read(AR_HEADER)) == AR_HEADER:
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(header[48:58].decode("ascii").strip())
            except ValueError:
                raise CatalogError(f"{archive.name}: malformed ar member header for {name!r}") from None
            if name.startswith("data.tar"):
                return fh.read(size)
            fh.seek(size + size % 2, os.SEEK_CUR)  # members are padded to an even size
    raise CatalogError(f"{archive.name} has no data.tar member; is it a Debian binary package?")


def _member(tf: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> BinaryIO:
    handle = tf.extractfile(member)
    if handle is None:
        raise CatalogError(f"cannot read {member.name} from {archive.name}")
    return handle  # type: ignore[return-value]


def apt_download(name: str, package: str, version: str, dest: Path, fix_hint: str) -> None:
    """Download `package=version` into `dest` with `apt-get download` (one `apt-get update` as root)."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise CatalogError(f"{name} comes from Debian's package {package} but apt-get is not installed "
                           f"(a Debian or Ubuntu system is needed); or {fix_hint}")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    # as root, apt drops privileges to _apt, which cannot write to a private cache folder
    options = ["-o", "APT::Sandbox::User=root"] if as_root else []
    command = [apt, *options, "download", f"{package}={version}"]
    failure = _run(command, dest)
    if failure and as_root and _missing_from_lists(failure):
        update = _run([apt, "update", "-qq"], dest)
        if update:
            raise OfflineError(f"cannot download {name}: apt-get update failed ({update}); {fix_hint}")
        failure = _run(command, dest)
    if not failure:
        return
    if _missing_from_lists(failure):
        how = "" if as_root else "run 'sudo apt-get update' first (the package lists may be empty), or "
        raise OfflineError(f"cannot download {name}: apt cannot find Debian package {package}={version} "
                           f"({failure}); {how}{fix_hint}")
    raise OfflineError(f"cannot download {name} (Debian package {package}={version}): {failure}; {fix_hint}")


def _run(command: list[str], cwd: Path) -> str:
    """Run an apt command; '' on success, else its most telling error line."""
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return f"running {command[0]} failed ({exc.strerror})"
    if proc.returncode == 0:
        return ""
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return ((errors or lines or ["apt-get exited with an error"])[0])[:300]


def _missing_from_lists(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _NOT_IN_LISTS)
