"""SentenceEncoder against sentence-transformers on real weights, pooling by hand, and bad input.

The oracle is `sentence_transformers.SentenceTransformer` loading the same all-MiniLM-L6-v2 folder
(and the folder polyformer saves); pooling is checked against per-text computations without
padding, so any leak of padded positions into a vector shows up.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import polyformer as pf
from polyformer.config import preset
from polyformer.core.pooling import pool
from polyformer.errors import DataError
from polyformer.models import PolyformerModel
from polyformer.tokenizers import load_tokenizer

sentence_transformers = pytest.importorskip("sentence_transformers")

N_TEXTS = 500


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def texts(rotten_tomatoes_rows) -> list[str]:
    return [row["text"] for row in rotten_tomatoes_rows[:N_TEXTS]]


@pytest.fixture(scope="module")
def encoder():
    return pf.SentenceEncoder.load("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def reference(minilm_dir: Path, texts: list[str]) -> np.ndarray:
    model = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    return model.encode(texts, batch_size=32, convert_to_numpy=True)


@pytest.fixture(scope="module")
def ours(encoder, texts: list[str]) -> np.ndarray:
    return encoder.encode(texts)


@pytest.fixture(scope="module")
def saved_dir(encoder, tmp_path_factory) -> Path:
    return encoder.save(tmp_path_factory.mktemp("st") / "minilm")


# ---- parity with sentence-transformers --------------------------------------------------------
def test_folder_settings_are_read(encoder) -> None:
    assert (encoder.pooling, encoder.normalize_module, encoder.max_seq_length) == ("mean", True, 256)
    assert encoder.dimension == 384


def test_matches_sentence_transformers(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == (N_TEXTS, 384) and ours.dtype == np.float32
    cos = cosines(ours, reference)
    print(f"all-MiniLM-L6-v2 vs sentence-transformers on {N_TEXTS} texts: cos min {cos.min():.7f} mean {cos.mean():.7f}")
    assert cos.min() >= 0.9999


def test_saved_folder_loads_in_sentence_transformers(saved_dir: Path, texts: list[str], reference: np.ndarray) -> None:
    model = sentence_transformers.SentenceTransformer(str(saved_dir), device="cpu")
    assert model.max_seq_length == 256
    assert cosines(model.encode(texts, convert_to_numpy=True), reference).min() >= 0.9999


def test_saved_folder_round_trips(saved_dir: Path, texts: list[str], ours: np.ndarray) -> None:
    again = pf.SentenceEncoder.load(saved_dir)
    assert (again.pooling, again.normalize_module, again.max_seq_length) == ("mean", True, 256)
    np.testing.assert_allclose(again.encode(texts[:64]), ours[:64], atol=1e-6)


def test_plain_hf_folder_defaults_to_mean_pooling(encoder, texts: list[str], ours: np.ndarray, tmp_path: Path) -> None:
    pf.save(encoder.model, tmp_path, format="hf")
    encoder.tokenizer.save(tmp_path)
    plain = pf.SentenceEncoder.load(tmp_path)
    assert plain.pooling == "mean" and plain.max_seq_length == 512
    np.testing.assert_allclose(plain.encode(texts[:16]), ours[:16], atol=1e-6)  # short texts: no truncation either way


def test_batch_size_and_order_do_not_change_vectors(encoder, texts: list[str], ours: np.ndarray) -> None:
    picked = texts[:24][::-1]
    one_by_one = encoder.encode(picked, batch_size=1, convert_to="torch")
    assert isinstance(one_by_one, torch.Tensor)
    np.testing.assert_allclose(one_by_one.numpy(), ours[:24][::-1], atol=1e-5)


def test_unnormalized_vectors_are_plain_mean_pooling(encoder, texts: list[str], ours: np.ndarray) -> None:
    raw = encoder.encode(texts[:8], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), ours[:8], atol=1e-6)


# ---- pooling against hand computation -----------------------------------------------------------
HAND_POOLING = {
    "cls": lambda h: h[0],
    "mean": lambda h: h.mean(0),
    "max": lambda h: h.max(0).values,
    "last": lambda h: h[-1],
    "weighted-mean": lambda h: (h * torch.arange(1, len(h) + 1)[:, None]).sum(0) / (len(h) * (len(h) + 1) / 2),
}
LENGTHS = [6, 3, 1]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", ["cls", "mean", "max", "last"])
def test_pool_ignores_padding_on_either_side(mode: str, side: str) -> None:
    torch.manual_seed(0)
    tokens = [torch.randn(n, 4) for n in LENGTHS]  # the real tokens of three sequences
    hidden = torch.full((3, 6, 4), 1e4)  # padding filled with a value that would show
    mask = torch.zeros(3, 6, dtype=torch.long)
    for row, states in enumerate(tokens):
        span = slice(0, len(states)) if side == "right" else slice(6 - len(states), 6)
        hidden[row, span], mask[row, span] = states, 1
    expected = torch.stack([HAND_POOLING[mode](states) for states in tokens])
    torch.testing.assert_close(pool(hidden, mask, mode), expected)


TINY_MODELS = {"encoder": "bert-tiny", "decoder": "llama-tiny"}


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_dir: Path):
    return load_tokenizer(minilm_dir)


@pytest.mark.parametrize("arch", list(TINY_MODELS))
@pytest.mark.parametrize("mode", list(HAND_POOLING))
def test_encoder_pools_each_text_as_if_alone(arch: str, mode: str, minilm_tokenizer) -> None:
    """A padded batch gives each text the vector it gets when run alone, pooled by hand."""
    torch.manual_seed(0)
    model = PolyformerModel(preset(TINY_MODELS[arch])).eval()
    encoder = pf.SentenceEncoder(model, minilm_tokenizer, pooling=mode)
    batch = ["a short one", "a much longer sentence that needs plenty of padding around the others", "mid length text"]
    got = encoder.encode(batch, normalize=False, batch_size=3)
    with torch.inference_mode():
        expected = [
            HAND_POOLING[mode](model.hidden_states(torch.tensor([minilm_tokenizer.encode(text)]))[0]).numpy()
            for text in batch
        ]
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def test_load_defaults_decoders_to_last_token_pooling(minilm_tokenizer, tmp_path: Path) -> None:
    model = PolyformerModel(preset("llama-tiny"))
    pf.save(model, tmp_path)
    minilm_tokenizer.save(tmp_path)
    encoder = pf.SentenceEncoder.load(tmp_path)
    assert encoder.pooling == "last" and encoder.max_seq_length == 512
    assert pf.SentenceEncoder.load(tmp_path, pooling="mean", max_seq_length=64).max_seq_length == 64


# ---- bad input ------------------------------------------------------------------------------------
def test_empty_list_gives_an_empty_matrix(encoder) -> None:
    empty = encoder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert encoder.encode([], convert_to="torch").shape == (0, 384)


def test_empty_string_gives_a_unit_vector(encoder) -> None:
    vector = encoder.encode([""])
    assert np.isfinite(vector).all() and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_two_million_characters_are_truncated_and_reported(encoder, caplog) -> None:
    huge = "the film is long " * 125_000  # ~2.1M characters
    with caplog.at_level(logging.WARNING, logger="polyformer.embeddings.encoder"):
        vectors = encoder.encode([huge, "short"])
    assert vectors.shape == (2, 384) and np.isfinite(vectors).all()
    assert encoder.last_truncated == 1
    assert "1 of 2 texts" in caplog.text and "truncated" in caplog.text
    encoder.encode(["short"])
    assert encoder.last_truncated == 0


def test_non_string_items_are_data_errors_naming_the_index(encoder) -> None:
    with pytest.raises(DataError, match=r"texts\[2\] is int"):
        encoder.encode(["fine", "also fine", 3])
    with pytest.raises(DataError, match="list of texts"):
        encoder.encode("a bare string")
    with pytest.raises(DataError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)


# ---- polyformer-built encoders, saved and reloaded by sentence-transformers -----------------------
@pytest.mark.parametrize("model_preset,mode", [("bert-tiny", "mean"), ("bert-tiny", "cls"), ("llama-tiny", "last"),
                                               ("llama-tiny", "weighted-mean"), ("bert-tiny", "max")])
def test_saved_polyformer_encoder_reloads_in_sentence_transformers(model_preset, mode, minilm_tokenizer, texts, tmp_path):
    torch.manual_seed(0)
    config = preset(model_preset, vocab_size=minilm_tokenizer.vocab_size, max_positions=128)
    ours = pf.SentenceEncoder(PolyformerModel(config).eval(), minilm_tokenizer, pooling=mode, max_seq_length=128)
    picked = texts[:40]
    expected = ours.encode(picked)
    folder = ours.save(tmp_path / "saved")
    theirs = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(picked, convert_to_numpy=True)
    assert cosines(theirs, expected).min() >= 0.9999
    again = pf.SentenceEncoder.load(folder)
    assert (again.pooling, again.max_seq_length) == (mode, 128)
    np.testing.assert_allclose(again.encode(picked), expected, atol=1e-5)


# ---- batching plans and precision --------------------------------------------------------------------
def test_token_budget_batches_give_the_same_vectors(encoder, texts: list[str], ours: np.ndarray) -> None:
    np.testing.assert_allclose(encoder.encode(texts[:64], max_tokens=300), ours[:64], atol=1e-5)
    with pytest.raises(DataError, match="max_tokens"):
        encoder.encode(["x"], max_tokens=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_reduced_precision_on_cpu_stays_close(dtype: str, texts: list[str], ours: np.ndarray) -> None:
    pytest.importorskip("polyformer.precision")
    reduced = pf.SentenceEncoder.load("all-MiniLM-L6-v2", dtype=dtype)
    assert reduced.dtype == dtype
    got = reduced.encode(texts[:100], max_tokens=4096)
    assert got.dtype == np.float32 and cosines(got, ours[:100]).min() >= 0.999


def test_bad_precision_requests_are_config_errors(encoder) -> None:
    from polyformer.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a GPU"):
        pf.SentenceEncoder.load("all-MiniLM-L6-v2", dtype="float16")
    with pytest.raises(ConfigError, match="dtype='fp8' is not one of"):
        encoder.to(dtype="fp8")
