"""Hostile files: truncated or bit-flipped checkpoints, vocabularies and index files never escape untyped.

A seeded fuzz over every file kind polyformer reads — model.safetensors, config.json,
tokenizer.json, a GGUF file (a tiny llama with a byte-level vocabulary, written here with
`gguf.GGUFWriter`), and an index's meta.json, store.sqlite and FAISS snapshot. Every mutation
either loads (and works) or raises an error from `polyformer.errors` whose message names the
file; through the CLI it gives exit code 0 or one `error:` line and exit code 2. A few cases run
as real processes with a timeout: no traceback, no signal, no hang.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import polyformer as pf
from cli_runner import assert_one_line_error, run_cli
from polyformer.embeddings import SentenceEncoder
from polyformer.embeddings.documents import Item
from polyformer.embeddings.index import VectorIndex
from polyformer.embeddings.semantic import build_index
from polyformer.errors import PolyformerError
from task_tiny import bpe_tokenizer, wordpiece_tokenizer
from train_tiny import CORPUS_LINES, one_thread  # noqa: F401  (fixture)

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_thread")
MUTATIONS = 16  # per file kind: half truncations, half byte flips
HIDDEN, FFN = 16, 32
BYTE_ARRAY = "general.test.bytes"  # a uint8 array: one-byte items, the case where a huge length never ended


# ---- the files ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny native model folder, a tiny GGUF file and a tiny vector index, all loadable."""
    root = tmp_path_factory.mktemp("hostile")
    tokenizer = bpe_tokenizer(CORPUS_LINES)
    torch.manual_seed(0)
    config = pf.preset("llama-tiny", vocab_size=tokenizer.vocab_size, hidden_size=HIDDEN, num_layers=1, num_heads=2,
                       num_kv_heads=1, intermediate_size=FFN, max_positions=32)
    model_dir = root / "model"
    pf.save(pf.PolyformerModel(config), model_dir)
    tokenizer.save(model_dir)
    words = wordpiece_tokenizer(CORPUS_LINES)
    encoder = SentenceEncoder(pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=words.vocab_size, hidden_size=HIDDEN,
                                                            num_layers=1, num_heads=2, intermediate_size=FFN, max_positions=32)),
                              words, pooling="mean", max_seq_length=32)
    encoder_dir = encoder.save(root / "encoder")
    items = [Item(id=f"line-{i}", text=text, metadata={"n": i}) for i, text in enumerate(CORPUS_LINES)]
    build_index(root / "index", encoder, items, str(encoder_dir), kind="hnsw").close()
    texts = root / "texts.txt"
    texts.write_text("to be or not to be\n")
    return {"model": model_dir, "gguf": write_gguf(root / "tiny.gguf", tokenizer), "index": root / "index", "texts": texts}


def write_gguf(path: Path, tokenizer) -> Path:
    """A one-layer llama GGUF with the tokenizer's byte-level BPE vocabulary (one tensor Q8_0, the rest F32)."""
    vocab = tokenizer.backend.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tokenizer.backend.to_str())["model"]["merges"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(32)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges([" ".join(merge) if isinstance(merge, list) else merge for merge in merges])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    writer.add_key_value(BYTE_ARRAY, [1, 2, 3], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), HIDDEN), "output_norm.weight": (HIDDEN,),
              "blk.0.attn_norm.weight": (HIDDEN,), "blk.0.ffn_norm.weight": (HIDDEN,),
              "blk.0.attn_q.weight": (HIDDEN, HIDDEN), "blk.0.attn_k.weight": (HIDDEN // 2, HIDDEN),
              "blk.0.attn_v.weight": (HIDDEN // 2, HIDDEN), "blk.0.attn_output.weight": (HIDDEN, HIDDEN),
              "blk.0.ffn_gate.weight": (FFN, HIDDEN), "blk.0.ffn_up.weight": (FFN, HIDDEN), "blk.0.ffn_down.weight": (HIDDEN, FFN)}
    for name, shape in shapes.items():
        values = rng.standard_normal(shape).astype(np.float32)
        if name == "blk.0.ffn_down.weight":  # rows of 32: one Q8_0 block each
            writer.add_tensor(name, gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def mutations(data: bytes, seed: int, count: int = MUTATIONS) -> list[tuple[str, bytes]]:
    """Seeded truncations and byte flips (every other flip lands in the first quarter: the headers)."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        if index % 2 == 0:
            cut = int(rng.integers(0, len(data)))
            out.append((f"truncated to {cut} bytes", data[:cut]))
            continue
        damaged = bytearray(data)
        span = len(data) if index % 4 == 1 else max(1, len(data) // 4)
        flips = int(rng.choice([1, 2, 8, 64]))
        for position in rng.integers(0, span, flips):
            damaged[position] ^= int(rng.integers(1, 256))
        out.append((f"{flips} byte(s) flipped", bytes(damaged)))
    return out


# ---- what is tried on each mutation ----------------------------------------------------------------
def _use_model(target: Path) -> None:
    folder = target.parent if target.suffix != ".gguf" else target
    pf.load(folder)
    pf.load_tokenizer(folder).encode("to be or not to be")


def _use_index(target: Path) -> None:
    index = VectorIndex.open(target.parent)
    try:
        ids, _, _ = index.items()
        queries = np.random.default_rng(0).standard_normal((2, index.spec.dimension)).astype(np.float32)
        index.search(queries, 3)
        index.search(queries, 2, where={"n": 1})
        if ids:
            index.like(ids[0], 2)
    finally:
        index.close(save=False)


def _cli(kind: str, target: Path, texts: Path) -> list[str]:
    if kind in ("meta.json", "store.sqlite", "vectors.faiss"):
        return ["search", target.parent, "to be", "--device", "cpu"]
    if kind == "tokenizer.json":
        return ["embed", "--model", target.parent, "--input", texts, "--device", "cpu"]
    return ["info", target if target.suffix == ".gguf" else target.parent]


KINDS: dict[str, tuple[str, str, Callable[[Path], None]]] = {  # file kind: (fixture folder, file, use)
    "model.safetensors": ("model", "model.safetensors", _use_model),
    "config.json": ("model", "config.json", _use_model),
    "tokenizer.json": ("model", "tokenizer.json", _use_model),
    "gguf": ("gguf", "tiny.gguf", _use_model),
    "meta.json": ("index", "meta.json", _use_index),
    "store.sqlite": ("index", "store.sqlite", _use_index),
    "vectors.faiss": ("index", "vectors.faiss", _use_index),
}


def _mutated_copy(files: dict[str, Path], kind: str, data: bytes, where: Path) -> Path:
    """A copy of the kind's folder (or file) with the mutated bytes in place of its file."""
    source, name, _ = KINDS[kind]
    if source == "gguf":
        where.mkdir(parents=True)
        target = where / name
    else:
        shutil.copytree(files[source], where)
        target = where / name
    target.write_bytes(data)
    return target


def _loads_or_names_the_file(use: Callable[[Path], None], target: Path, what: str) -> None:
    try:
        use(target)
    except PolyformerError as err:
        assert target.name in str(err), f"{what}: the error does not name {target.name}: {err}"
    except Exception as err:  # noqa: BLE001 -- exactly what must not happen
        pytest.fail(f"{what}: untyped {type(err).__name__}: {err}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_mutation_loads_or_is_a_typed_error_naming_the_file(kind, files, tmp_path):
    source, name, use = KINDS[kind]
    original = (files[source] if source == "gguf" else files[source] / name).read_bytes()
    use(_mutated_copy(files, kind, original, tmp_path / "original"))  # the undamaged file loads
    for number, (how, data) in enumerate(mutations(original, seed=sorted(KINDS).index(kind))):
        what = f"{name} {how} (mutation {number})"
        _loads_or_names_the_file(use, _mutated_copy(files, kind, data, tmp_path / f"api-{number}"), what)
        target = _mutated_copy(files, kind, data, tmp_path / f"cli-{number}")
        result = run_cli(*_cli(kind, target, files["texts"]))
        if result.returncode != 0:
            assert_one_line_error(result, target.name)


# ---- the reported cases, and real processes -------------------------------------------------------
def _with_bytes(path: Path, out: Path, find: bytes, offset: int, value: bytes) -> Path:
    """A copy of `path` with `value` written `offset` bytes after the first occurrence of `find`."""
    data = bytearray(path.read_bytes())
    at = data.index(find) + offset
    data[at:at + len(value)] = value
    out.write_bytes(bytes(data))
    return out


def _huge_array(path: Path, out: Path) -> Path:
    """The uint8 array claims 2^60 items: gguf's reader read on past the end of the file, never ending."""
    key = BYTE_ARRAY.encode()
    return _with_bytes(path, out, key, len(key) + 8, (1 << 60).to_bytes(8, "little"))


def test_undecodable_metadata_string_and_huge_array_length_are_checkpoint_errors(files, tmp_path):
    from polyformer.errors import CheckpointError, TokenizerError

    # a byte of the chat template that is not UTF-8 (a bare UnicodeDecodeError before)
    bad_text = _with_bytes(files["gguf"], tmp_path / "bad-text.gguf", b"{% for m in", 3, b"\xff")
    with pytest.raises(CheckpointError, match="bad-text.gguf.*tokenizer.chat_template"):
        pf.load(bad_text)
    huge = _huge_array(files["gguf"], tmp_path / "huge.gguf")
    with pytest.raises(CheckpointError, match="huge.gguf.*cannot fit"):
        pf.load(huge)
    with pytest.raises(TokenizerError, match="huge.gguf"):
        pf.load_tokenizer(huge)


def test_damaged_files_through_real_processes(files, tmp_path):
    """One error line and exit code 2: no traceback, no signal, no hang (the huge array used to hang)."""
    huge = _huge_array(files["gguf"], tmp_path / "huge.gguf")
    bad_text = _with_bytes(files["gguf"], tmp_path / "bad-text.gguf", b"{% for m in", 3, b"\xff")
    store_bytes = bytearray((files["index"] / "store.sqlite").read_bytes())
    store_bytes[:16] = b"not a database!!"
    store = _mutated_copy(files, "store.sqlite", bytes(store_bytes), tmp_path / "store")
    cases = [(["info", huge], huge.name), (["embed", "--model", bad_text, "--input", files["texts"]], bad_text.name),
             (["index", "info", store.parent], store.name)]
    processes = [subprocess.Popen([sys.executable, "-m", "polyformer.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for args, _ in cases]
    for process, (args, name) in zip(processes, cases):
        stdout, stderr = process.communicate(timeout=120)
        assert_one_line_error(subprocess.CompletedProcess(args, process.returncode, stdout, stderr), name)
