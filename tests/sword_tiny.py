"""A writer of tiny SWORD zText modules (BOOK blocks, zlib), for tests of the `bible-en-es` parser.

The layout is what pysword (and the SWORD library) reads: `mods.d/MODULE.conf`, and per testament
`ot|nt.bzz` (zlib blocks), `.bzs` (block index: offset, size, uncompressed size) and `.bzv` (verse
index: block, start, length) with one record per verse slot of the versification.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pysword.books import BibleStructure

Ref = tuple[str, int, int]


def write_module(library: Path, module: str, versification: str, verses: dict[Ref, str]) -> Path:
    """A SWORD library folder holding one zText module with `verses` (OSIS markup by reference)."""
    data = library / "modules" / "texts" / "ztext" / module
    data.mkdir(parents=True, exist_ok=True)
    (library / "mods.d").mkdir(parents=True, exist_ok=True)
    (library / "mods.d" / f"{module.lower()}.conf").write_text(
        f"[{module}]\nDataPath=./modules/texts/ztext/{module}/\nModDrv=zText\nSourceType=OSIS\n"
        f"Encoding=UTF-8\nCompressType=ZIP\nBlockType=BOOK\nVersification={versification}\n")
    structure = BibleStructure(versification.lower(), ["ot", "nt"])
    slots: dict[str, dict[int, bytes]] = {"ot": {}, "nt": {}}
    for (book, chapter, verse), text in verses.items():
        for testament, indices in structure.ref_to_indicies(books=[book], chapters=[chapter], verses=[verse]).items():
            slots[testament][indices[0]] = text.encode("utf-8")
    for testament, texts in slots.items():
        block, records = b"", bytearray()
        for index in range(max(texts, default=0) + 1):
            text = texts.get(index, b"")
            records += struct.pack("<IIH", 0, len(block), len(text))
            block += text
        compressed = zlib.compress(block)
        (data / f"{testament}.bzz").write_bytes(compressed)
        (data / f"{testament}.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(block)))
        (data / f"{testament}.bzv").write_bytes(bytes(records))
    return library
