"""The `bible-en-es` verse pairs: World English Bible ↔ Reina-Valera 1909, from Debian's SWORD modules.

The catalog builds the pairs once (`build`, a `BuiltEntry` builder) from the SWORD libraries of
`sword-text-web` (module engWEB2015eb, NRSVA versification) and `sword-text-sparv` (spaRV1909eb,
KJV versification), read with `pysword`, and caches them as `pairs.jsonl` — one JSON object per
verse: `id` ("Gen.1.1"), `book`, `chapter`, `verse`, `split`, `text_a` (English), `text_b`
(Spanish) — with `stats.json` beside it (counts of kept and skipped verses, books per split).

Markup: the modules are OSIS. Footnotes, section headings (non-canonical titles) and other
editorial material are dropped with their content; canonical titles (psalm superscriptions, which
the Spanish text carries inside verse 1) are kept as text; every other tag is removed and its
text kept; anything after a chapter's end marker (the WEB's glossary follows Revelation 22:21)
is cut; entities are unescaped and whitespace collapsed.

Alignment: verses are paired by reference (book, chapter, verse) over the 66 books both versions
hold (a reference with no text in either is no verse). Three kinds of reference are skipped, and `stats.json` counts each:
- `empty`: no text in one version (the WEB leaves out Luke 17:36, Acts 8:37, ...);
- `renumbered`: a chapter whose last verses are empty in one version, and the chapter after it.
  The Spanish numbering follows the Hebrew at a few chapter breaks (Jonah 1:17 is Jonah 2:1 there)
  and the module maps it onto KJV references by leaving the slots empty and shifting the next
  chapter, so neither chapter pairs verse by verse;
- `merged`: one side over MAX_LENGTH_RATIO times longer than the other — text of neighbouring
  verses (or a closing subscription) merged into one verse of one version.

Split: by whole books, fixed lists (VALIDATION_BOOKS, TEST_BOOKS: about 1,000 verses each, Old
and New Testament, narrative, poetry and letters, none with a near-duplicate elsewhere); every
other book trains.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from polyformer.errors import CatalogError

NAME = "bible-en-es"
PAIRS_FILE = "pairs.jsonl"
STATS_FILE = "stats.json"
ENGLISH = ("sword-text-web", "engWEB2015eb")  # (catalog entry, SWORD module)
SPANISH = ("sword-text-sparv", "spaRV1909eb")
VALIDATION_BOOKS = ("Esth", "Song", "Lam", "Hab", "Zech", "Gal", "1Thess", "1Pet")
TEST_BOOKS = ("Ruth", "Eccl", "Joel", "Nah", "Phil", "Titus", "Phlm", "Heb", "Jas")
MAX_LENGTH_RATIO = 2.5
SKIP_REASONS = ("empty", "renumbered", "merged")

Ref = tuple[str, int, int]  # (OSIS book, chapter, verse)

_DROPPED = r"note|catchWord|rdg|rdgGroup|index|figure"
_DROP_WITH_CONTENT = re.compile(rf"<({_DROPPED})\b[^>]*/>|<({_DROPPED})\b.*?</\2>", re.S)
_SECTION_TITLE = re.compile(r'<title\b(?![^>]*canonical="true")[^>]*/>|<title\b(?![^>]*canonical="true").*?</title>', re.S)
_CHAPTER_END = re.compile(r"<chapter\b[^>]*\beID=")
_BREAKING = re.compile(r"</?(?:l|lg|lb|p|div|item|list)\b[^>]*>")  # line and paragraph boundaries
_ADDED_WORDS = re.compile(r"</?transChange\b[^>]*>")  # the RV's supplied words, often abutting others
_TAG = re.compile(r"<[^>]+>")
_JOIN = "\x00"


@dataclass(frozen=True)
class VersePair:
    """One aligned verse: English text_a, Spanish text_b."""

    book: str
    chapter: int
    verse: int
    text_a: str
    text_b: str

    @property
    def id(self) -> str:
        return f"{self.book}.{self.chapter}.{self.verse}"


def split_of(book: str) -> str:
    """The split a book belongs to: train, dev or test."""
    if book in VALIDATION_BOOKS:
        return "dev"
    return "test" if book in TEST_BOOKS else "train"


def strip_markup(osis: str) -> str:
    """The plain text of one verse's OSIS markup (see the module docstring for the rules)."""
    end = _CHAPTER_END.search(osis)
    text = osis[: end.start()] if end else osis
    text = _DROP_WITH_CONTENT.sub(_JOIN, text)
    text = _SECTION_TITLE.sub(_JOIN, text)
    text = _BREAKING.sub(" ", text)
    text = _ADDED_WORDS.sub(_JOIN, text)
    text = _TAG.sub("", text)
    # a footnote or a supplied word between two words stands for a space; elsewhere for nothing
    text = re.sub(rf"(?<=\w){_JOIN}+(?=\w)", " ", text).replace(_JOIN, "")
    return " ".join(html.unescape(text).split())


def read_module(library: Path, module: str) -> dict[Ref, str]:
    """Raw OSIS text of every verse of a SWORD module, by reference, in canon order."""
    try:
        from pysword.modules import SwordModules
    except ImportError:
        raise CatalogError(f"{NAME} needs the pysword package to read SWORD modules: pip install pysword") from None
    modules = SwordModules(str(library))
    if module not in modules.parse_modules():
        raise CatalogError(f"{library}: no SWORD module {module} (mods.d/*.conf)")
    bible = modules.get_bible_from_module(module)
    if hasattr(bible, "_decompressed_text"):  # pysword inflates a whole book's block for every verse
        bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    verses: dict[Ref, str] = {}
    for books in bible.get_structure().get_books().values():
        for book in books:
            texts = iter(bible.get_iter(books=[book.name], clean=False))
            for chapter, count in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, count + 1):
                    verses[(book.osis_name, chapter, verse)] = next(texts, "")
    return verses


def align(english: dict[Ref, str], spanish: dict[Ref, str]) -> tuple[list[VersePair], Counter]:
    """Verse pairs of the references both versions have, and the count of each skip reason."""
    texts = {ref: (strip_markup(english[ref]), strip_markup(spanish[ref])) for ref in english if ref in spanish}
    refs = [ref for ref, (en, es) in texts.items() if en or es]  # a reference empty in both is no verse
    renumbered = _renumbered_chapters(refs, texts)
    pairs: list[VersePair] = []
    skipped: Counter = Counter({reason: 0 for reason in SKIP_REASONS})
    for ref in refs:
        en, es = texts[ref]
        if not en or not es:
            skipped["empty"] += 1
        elif ref[:2] in renumbered:
            skipped["renumbered"] += 1
        elif max(len(en), len(es)) > MAX_LENGTH_RATIO * min(len(en), len(es)):
            skipped["merged"] += 1
        else:
            pairs.append(VersePair(*ref, en, es))
    return pairs, skipped


def _renumbered_chapters(refs: list[Ref], texts: dict[Ref, tuple[str, str]]) -> set[tuple[str, int]]:
    """Chapters whose last verse is empty in one version, and the chapters after them."""
    last: dict[tuple[str, int], Ref] = {}
    for ref in refs:
        last[ref[:2]] = ref
    out: set[tuple[str, int]] = set()
    for (book, chapter), ref in last.items():
        if not all(texts[ref]):
            out |= {(book, chapter), (book, chapter + 1)}
    return out


def build(inputs: dict[str, Path], out: Path) -> None:
    """Catalog builder: parse both modules, align, write pairs.jsonl and stats.json into `out`."""
    english = read_module(inputs[ENGLISH[0]], ENGLISH[1])
    spanish = read_module(inputs[SPANISH[0]], SPANISH[1])
    pairs, skipped = align(english, spanish)
    if not pairs:
        raise CatalogError(f"{NAME}: no verse pairs found in {ENGLISH[1]} and {SPANISH[1]}")
    books: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    counts: Counter = Counter()
    with (out / PAIRS_FILE).open("w", encoding="utf-8") as fh:
        for pair in pairs:
            split = split_of(pair.book)
            counts[split] += 1
            if pair.book not in books[split]:
                books[split].append(pair.book)
            fh.write(json.dumps({"id": pair.id, **asdict(pair), "split": split}, ensure_ascii=False) + "\n")
    stats = {"pairs": len(pairs), "skipped": dict(skipped), "splits": dict(counts), "books": books,
             "modules": {"en": ENGLISH[1], "es": SPANISH[1]}}
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")


def pairs_file(folder: Path | None = None) -> Path:
    """The cached pairs.jsonl (fetching and building it on first use)."""
    if folder is None:
        from polyformer.data.catalog import fetch

        folder = fetch(NAME)
    return folder / PAIRS_FILE
