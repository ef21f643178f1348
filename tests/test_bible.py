"""The `bible-en-es` builder: SWORD modules → aligned verse pairs, on tiny modules written here and on the real set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pysword")

from polyformer.data import bible
from tests.sword_tiny import write_module

LONG = "y mucho más texto de los versículos siguientes, " * 4
ENGLISH = {
    ("Gen", 1, 1): '<w lemma="strong:H0430">In</w> <w>the</w> beginning, <w>God</w><note placement="foot">'
                   '<reference>1:1</reference>A note.</note><w>created</w> the heavens &amp; the earth.',
    ("Gen", 1, 2): '<title type="section">The Creation</title><div type="x-p"/>The earth was empty.',
    ("Gen", 1, 3): "<lb/>",  # markup only: no text in this version
    ("Gen", 1, 4): "God saw the light.",
    ("Gen", 1, 5): "God called the light Day.",
    ("Gen", 2, 1): "The heavens were finished.",
    ("Gen", 2, 2): "On the seventh day God finished his work.",
    ("Gen", 2, 3): "God blessed the seventh day.",
    ("Gen", 3, 1): "Now the serpent was more subtle.",
    ("Ps", 3, 1): '<title canonical="true" type="psalm">A Psalm by David.</title> <l level="1"/>Yahweh, how my '
                  'adversaries have increased!<l eID="x"/><l level="2"/>Many rise up against me.',
    ("Ruth", 1, 1): "In the days when the judges judged, there was a famine.",
    ("Gal", 1, 1): "Paul, an apostle.",
    ("Rev", 22, 21): 'The grace of the Lord Jesus be with all. Amen. <chapter eID="Rev.22"/> '
                     '<div type="glossary"/><list><item>Abba means father.</item></list>',
}
SPANISH = {
    ("Gen", 1, 1): "<w>EN el principio</w> <w>crió</w> <w>Dios</w> los cielos y la tierra.",
    ("Gen", 1, 2): "Y la tierra estaba desordenada.",
    ("Gen", 1, 3): "Y dijo Dios: Sea la luz.",
    ("Gen", 1, 4): "Y vió Dios que la luz era buena " + LONG,
    ("Gen", 1, 5): '<w>Y llamó</w><transChange type="added">Dios</transChange><w>á la luz</w> Día.',
    ("Gen", 2, 1): "Y fueron acabados los cielos.",
    ("Gen", 2, 2): "Y acabó Dios en el día séptimo.",
    ("Gen", 2, 3): "",  # the Spanish numbering moved it into chapter 3
    ("Gen", 3, 1): "Y bendijo Dios al día séptimo. EMPERO la serpiente era astuta.",
    ("Ps", 3, 1): "Salmo de David. ¡OH Jehová, cuánto se han multiplicado mis enemigos! muchos se levantan contra mí.",
    ("Ruth", 1, 1): "Y ACONTECIÓ en los días que gobernaban los jueces, que hubo hambre en la tierra.",
    ("Gal", 1, 1): "PABLO, apóstol.",
    ("Rev", 22, 21): "La gracia de nuestro Señor Jesucristo sea con todos vosotros. Amén.",
}


@pytest.fixture
def libraries(tmp_path: Path) -> dict[str, Path]:
    return {
        bible.ENGLISH[0]: write_module(tmp_path / "web", bible.ENGLISH[1], "NRSVA", ENGLISH),
        bible.SPANISH[0]: write_module(tmp_path / "rv", bible.SPANISH[1], "KJV", SPANISH),
    }


def _built(libraries: dict[str, Path], out: Path) -> tuple[list[dict], dict]:
    out.mkdir()
    bible.build(libraries, out)
    lines = (out / bible.PAIRS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines], json.loads((out / bible.STATS_FILE).read_text())


def test_strip_markup_rules() -> None:
    assert bible.strip_markup(ENGLISH[("Gen", 1, 1)]) == "In the beginning, God created the heavens & the earth."
    assert bible.strip_markup(ENGLISH[("Gen", 1, 2)]) == "The earth was empty."  # section heading dropped
    assert bible.strip_markup(ENGLISH[("Ps", 3, 1)]) == (  # canonical psalm title kept, line breaks are spaces
        "A Psalm by David. Yahweh, how my adversaries have increased! Many rise up against me.")
    assert bible.strip_markup(SPANISH[("Gen", 1, 5)]) == "Y llamó Dios á la luz Día."  # supplied word spaced
    assert bible.strip_markup(ENGLISH[("Rev", 22, 21)]) == "The grace of the Lord Jesus be with all. Amen."
    assert bible.strip_markup("<lb/>  ") == ""


def test_build_pairs_and_skips(libraries: dict[str, Path], tmp_path: Path) -> None:
    records, stats = _built(libraries, tmp_path / "out")
    assert [r["id"] for r in records] == ["Gen.1.1", "Gen.1.2", "Gen.1.5", "Ruth.1.1", "Ps.3.1", "Gal.1.1", "Rev.22.21"]
    first = records[0]
    assert first == {"id": "Gen.1.1", "book": "Gen", "chapter": 1, "verse": 1, "split": "train",
                     "text_a": "In the beginning, God created the heavens & the earth.",
                     "text_b": "EN el principio crió Dios los cielos y la tierra."}
    # Gen 1:3 and 2:3 are empty in one version; 1:4 is 2.5x longer in Spanish; Gen 2 ends empty in
    # Spanish, so Gen 2 and 3 are numbered differently there
    assert stats["skipped"] == {"empty": 2, "renumbered": 3, "merged": 1}
    assert stats["pairs"] == len(records) == 7
    assert {r["id"]: r["split"] for r in records if r["split"] != "train"} == {"Ruth.1.1": "test", "Gal.1.1": "dev"}
    assert stats["splits"] == {"train": 5, "test": 1, "dev": 1}


def test_build_is_deterministic(libraries: dict[str, Path], tmp_path: Path) -> None:
    _built(libraries, tmp_path / "a")
    _built(libraries, tmp_path / "b")
    for name in (bible.PAIRS_FILE, bible.STATS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_split_is_by_whole_book() -> None:
    assert not set(bible.VALIDATION_BOOKS) & set(bible.TEST_BOOKS)
    assert {bible.split_of(b) for b in bible.VALIDATION_BOOKS} == {"dev"}
    assert {bible.split_of(b) for b in bible.TEST_BOOKS} == {"test"}
    assert bible.split_of("Gen") == bible.split_of("Rev") == "train"


def test_missing_module_is_one_line(libraries: dict[str, Path]) -> None:
    from polyformer.errors import CatalogError

    with pytest.raises(CatalogError, match="no SWORD module nosuch"):
        bible.read_module(libraries[bible.ENGLISH[0]], "nosuch")


def test_real_set(catalog_path) -> None:
    folder = catalog_path("bible-en-es")
    stats = json.loads((folder / bible.STATS_FILE).read_text())
    assert stats["pairs"] > 30_000 and sum(stats["skipped"].values()) < 1_000
    assert 900 <= stats["splits"]["dev"] <= 1_100 and 900 <= stats["splits"]["test"] <= 1_100
    assert stats["books"]["dev"] == list(bible.VALIDATION_BOOKS) and stats["books"]["test"] == list(bible.TEST_BOOKS)
    with (folder / bible.PAIRS_FILE).open(encoding="utf-8") as fh:
        john = next(json.loads(line) for line in fh if line.startswith('{"id": "John.3.16"'))
    assert john["text_a"] == ("For God so loved the world, that he gave his only born Son, that whoever believes in "
                              "him should not perish, but have eternal life.")  # the footnote on "only born" is gone
    assert john["text_b"].startswith("Porque de tal manera amó Dios al mundo")


def test_missing_pysword_is_one_line(libraries: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from polyformer.errors import CatalogError

    real_import = builtins.__import__

    def no_pysword(name, *args, **kwargs):
        if name.startswith("pysword"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pysword)
    with pytest.raises(CatalogError, match="bible-en-es needs the pysword package to read SWORD modules: pip install pysword"):
        bible.read_module(libraries[bible.ENGLISH[0]], bible.ENGLISH[1])
