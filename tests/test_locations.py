"""One resolver for every model spec: paths, run directories, catalog names and hub ids (offline, cache laid out here).

The hub cache is built by the test in huggingface_hub's layout
(`models--org--name/snapshots/<commit>/` + `refs/main`), and `HF_HUB_OFFLINE=1` (or an endpoint
that cannot answer) makes sure no test touches the network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyformer as pf
from cli_runner import assert_one_line_error, run_cli
from polyformer.errors import CheckpointError, OfflineError, TokenizerError
from polyformer.generation.pipeline import TextGenerationPipeline
from polyformer.locations import is_hub_id, resolve
from task_tiny import SENTIMENT, bpe_tokenizer, decoder_dir, encoder_dir, wordpiece_tokenizer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = [text for text, _ in SENTIMENT]


def snapshot(cache, repo: str):
    """The snapshot folder of `repo` at COMMIT in a hub cache, with refs/main pointing to it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    folder = root / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A hub cache holding org/tiny-llama (HF layout + tokenizer) and org/tiny-st (a sentence-transformers folder)."""
    cache = tmp_path / "hub"
    llama_dir = decoder_dir(bpe_tokenizer(TEXTS), tmp_path / "llama")
    pf.save(pf.load(llama_dir), snapshot(cache, "org/tiny-llama"), format="hf", tokenizer=pf.load_tokenizer(llama_dir))
    bert_dir = encoder_dir(wordpiece_tokenizer(TEXTS), tmp_path / "bert")
    pf.SentenceEncoder(pf.load(bert_dir), pf.load_tokenizer(bert_dir), pooling="mean").save(snapshot(cache, "org/tiny-st"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, llama_dir, bert_dir


def test_hub_ids_load_from_the_cache_everywhere(hub):
    cache, llama_dir, bert_dir = hub
    assert resolve("org/tiny-llama") == cache / "models--org--tiny-llama" / "snapshots" / COMMIT
    ids = torch.tensor([[3, 17, 42, 5]])
    torch.testing.assert_close(pf.load("org/tiny-llama")(ids).logits, pf.load(llama_dir)(ids).logits)
    assert pf.load_tokenizer("org/tiny-llama").encode(TEXTS[0]) == pf.load_tokenizer(llama_dir).encode(TEXTS[0])
    vectors = pf.SentenceEncoder.load("org/tiny-st").encode(TEXTS[:2])
    expected = pf.SentenceEncoder(pf.load(bert_dir), pf.load_tokenizer(bert_dir), pooling="mean").encode(TEXTS[:2])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    generated = run_cli("generate", "--model", "org/tiny-llama", "--prompt", "a gripping", "--max-new-tokens", "5",
                        "--device", "cpu")
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == TextGenerationPipeline.load(llama_dir, device="cpu")("a gripping", max_new_tokens=5) + "\n"
    info = run_cli("info", "org/tiny-st", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["arch"] == "encoder"


def test_a_cached_hub_id_needs_no_network_even_online(hub, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls, real = [], huggingface_hub.snapshot_download

    def recorded(repo, **options):
        calls.append(options["local_files_only"])
        return real(repo, **options)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recorded)
    assert pf.load("org/tiny-llama").config.arch == "decoder"
    assert calls == [True]  # the cache answered; the hub was never asked


def test_offline_and_not_cached_is_one_error_line(hub):
    cache, _, _ = hub
    with pytest.raises(OfflineError, match="org/absent: .*not in the hub cache .*HF_HUB_OFFLINE is set"):
        pf.load("org/absent")
    with pytest.raises(OfflineError, match="org/absent"):
        pf.load_tokenizer("org/absent")
    assert_one_line_error(run_cli("info", "org/absent"), "org/absent", str(cache), "HF_HUB_OFFLINE is set")
    assert_one_line_error(run_cli("predict", "--model", "org/absent", "--input", "-"), "org/absent", "not in the hub cache")


def test_paths_run_directories_and_names_that_are_none_of_them(tmp_path):
    tokenizer = wordpiece_tokenizer(TEXTS)
    run = tmp_path / "run"
    encoder_dir(tokenizer, run / "model")
    (run / "checkpoints").mkdir()
    assert resolve(run) == run / "model" and resolve(str(run / "model")) == run / "model"
    assert pf.load_tokenizer(run).encode(TEXTS[0]) == tokenizer.encode(TEXTS[0])
    assert pf.load(run).config.arch == "encoder"
    with pytest.raises(CheckpointError, match="no-such-model: no such file or directory, and not a catalog name"):
        pf.load("no-such-model")
    with pytest.raises(TokenizerError, match="no such file"):
        pf.load_tokenizer(tmp_path / "org" / "name")  # a Path is a path, never a hub id
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct") and is_hub_id("org/name/model-Q4_K_M.gguf")
    assert not any(map(is_hub_id, ["all-MiniLM-L6-v2", "./org/name", "/abs/path", "org/../etc", "a/b/c", "org--x/y"]))
