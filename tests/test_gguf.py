"""GGUF loading: real SmolLM2 weights and tiny synthetic files against transformers' Llama.

The synthetic files are written here with `gguf.GGUFWriter` the way llama.cpp's converter writes
a Llama checkpoint (query/key rows permuted for ggml's interleaved rotary, 2-D weights quantized),
from a random `transformers.LlamaForCausalLM`; loading them back must give that model's logits.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from polyformer.errors import CheckpointError, UnknownModelError
from polyformer.io.gguf import gguf_metadata, load_gguf

Q8_0 = gguf.GGMLQuantizationType.Q8_0
F32 = gguf.GGMLQuantizationType.F32
F16 = gguf.GGMLQuantizationType.F16
HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None  # transformers needs it to read GGUF
needs_accelerate = pytest.mark.skipif(not HAS_ACCELERATE, reason="transformers reads GGUF only with accelerate installed")

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based inks and a wooden screw press into a system that could "
    "produce books faster and more cheaply than any scribe. Within a few decades, presses had spread "
    "to more than two hundred cities across Europe, and the number of printed books grew into the millions."
)


# ---- real weights: SmolLM2-135M-Instruct (Q4_1 / Q8_0) ------------------------------------------
@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path):
    return load_gguf(smollm2_gguf, dtype="float32")


@pytest.fixture(scope="module")
def smollm2_prompt(smollm2_gguf: Path) -> torch.Tensor:
    from polyformer.tokenizers import load_tokenizer

    ids = load_tokenizer(smollm2_gguf).encode(PROMPT)
    assert len(ids) >= 64
    return torch.tensor([ids[:64]])


def test_smollm2_config_from_metadata(smollm2) -> None:
    config = smollm2.config
    assert (config.hidden_size, config.num_layers, config.num_heads, config.kv_heads) == (576, 30, 9, 3)
    assert (config.ffn_size, config.vocab_size, config.max_positions) == (1536, 49152, 8192)
    assert config.rope_theta == 100000.0 and config.tie_word_embeddings
    assert (config.bos_token_id, config.eos_token_id) == (1, 2)


def test_metadata_exposes_architecture_template_and_token_ids(smollm2_gguf: Path) -> None:
    meta = gguf_metadata(smollm2_gguf)
    assert meta["architecture"] == "llama"
    assert "<|im_start|>" in meta["chat_template"]
    assert (meta["bos_token_id"], meta["eos_token_id"], meta["pad_token_id"]) == (1, 2, 2)
    assert len(meta["tokenizer.ggml.tokens"]) == 49152


@needs_accelerate
def test_smollm2_logits_match_transformers(smollm2, smollm2_gguf: Path, smollm2_prompt: torch.Tensor) -> None:
    theirs = transformers.AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name).eval()
    with torch.inference_mode():
        expected = theirs(smollm2_prompt).logits
        got = smollm2(smollm2_prompt).logits
    diff = (got - expected).abs().max().item()
    print(f"SmolLM2-135M GGUF, 64 tokens: max |logit diff| vs transformers = {diff:.3g}")
    assert diff < 1e-3
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


# ---- synthetic files ------------------------------------------------------------------------------
TINY = {
    "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def _ggml_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp converter's permutation: per head, half-split rows → interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _gguf_tensors(model) -> dict[str, np.ndarray]:
    """GGUF name → float32 array in PyTorch order, query/key rows permuted as llama.cpp writes them."""
    config = model.config
    names = {
        "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }
    for i in range(config.num_hidden_layers):
        names.update({f"model.layers.{i}.{hf}.weight": f"blk.{i}.{ours}.weight" for hf, ours in per_layer.items()})
    out = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp writes no output.weight for a tied head
        array = tensor.detach().numpy().astype(np.float32)
        name = names[hf_name]
        if name.endswith("attn_q.weight"):
            array = _ggml_rotary_rows(array, config.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            array = _ggml_rotary_rows(array, config.num_key_value_heads)
        out[name] = array
    return out


def _stored_type(name: str, array: np.ndarray, matrices: gguf.GGMLQuantizationType = Q8_0) -> gguf.GGMLQuantizationType:
    if array.ndim == 1:
        return F32
    if name == "output.weight":
        return F16
    return Q8_0 if name == "token_embd.weight" else matrices


def write_tiny_gguf(path: Path, model, arch: str = "llama", qtype: gguf.GGMLQuantizationType = Q8_0) -> dict[str, np.ndarray]:
    """Write `model` as llama.cpp would (block matrices as `qtype`, the token table Q8_0);
    returns GGUF name → the raw stored array (quantized bytes or floats)."""
    config = model.config
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_token_list([f"<t{i}>" for i in range(config.vocab_size)])
    stored = {}
    for name, array in _gguf_tensors(model).items():
        stored_type = _stored_type(name, array, qtype)
        stored[name] = gguf.quants.quantize(array, stored_type)
        writer.add_tensor(name, stored[name], raw_dtype=stored_type)  # quantized: shape read from the byte rows
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


def _as_stored(model):
    """A copy of the HF model whose weights went through the file's quantization and back.

    Quantization works on blocks along each row, so it commutes with llama.cpp's row permutation.
    """
    reference = transformers.LlamaForCausalLM(model.config).eval()
    state = {}
    for (hf_name, tensor), (gguf_name, array) in zip(model.state_dict().items(), _gguf_tensors(model).items()):
        qtype = _stored_type(gguf_name, array)
        values = gguf.quants.dequantize(gguf.quants.quantize(tensor.numpy(), qtype), qtype)
        state[hf_name] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(tensor.shape))
    reference.load_state_dict(state)
    return reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, object, dict[str, np.ndarray]]:
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    stored = write_tiny_gguf(path, model)
    return path, model, stored


def test_tiny_gguf_matches_hf_llama_with_the_stored_weights(tiny) -> None:
    path, model, _ = tiny
    ours = load_gguf(path, dtype="float32")
    assert not ours.config.tie_word_embeddings and ours.config.kv_heads == 2
    reference = _as_stored(model)
    ids = torch.randint(0, TINY["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        diff = (ours(ids).logits - reference(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_q8_0_is_dequantized_to_block_scale_times_int8(tiny) -> None:
    """Hand decode of Q8_0: blocks of 34 bytes = float16 scale d + 32 int8 q; value = d * q."""
    path, _, stored = tiny
    raw = stored["blk.0.attn_v.weight"]  # (rows, blocks * 34) bytes; v is stored unpermuted
    blocks = raw.reshape(raw.shape[0], -1, 34)
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)  # (rows, blocks, 1)
    quants = blocks[..., 2:].copy().view(np.int8).astype(np.float32)  # (rows, blocks, 32)
    expected = torch.from_numpy((scale * quants).reshape(raw.shape[0], -1))
    ours = load_gguf(path, dtype="float32")
    v_rows = ours.config.kv_heads * ours.config.dim_head
    qkv = ours.state_dict()["body.stack.blocks.0.attn.qkv.weight"]  # rows [q; k; v]
    assert torch.equal(qkv[-v_rows:], expected)


@needs_accelerate
def test_tiny_gguf_matches_transformers_reading_the_same_file(tiny) -> None:
    path, _, _ = tiny
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    ids = torch.randint(0, TINY["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        diff = (load_gguf(path, dtype="float32")(ids).logits - theirs(ids).logits).abs().max().item()
    assert diff < 1e-4


# ---- bad files ------------------------------------------------------------------------------------
def test_truncated_gguf_is_a_checkpoint_error_naming_the_file(tiny, tmp_path: Path) -> None:
    path, _, _ = tiny
    data = path.read_bytes()
    for size in (len(data) // 2, 100, 0):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=f"cut{size}.gguf"):
            load_gguf(cut)


def test_not_a_gguf_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"definitely not gguf" * 10)
    with pytest.raises(CheckpointError, match="bad.gguf"):
        load_gguf(bad)
    with pytest.raises(CheckpointError, match="missing.gguf"):
        load_gguf(tmp_path / "missing.gguf")


def test_other_architectures_are_unknown_models(tmp_path: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(path, "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnknownModelError, match="'gpt2'"):
        load_gguf(path)
