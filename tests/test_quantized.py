"""Block-quantized GGUF weights kept quantized: the decoding of Q4_0 / Q4_1 / Q8_0 bytes, the packed
4-bit kernel against a dequantized matmul, and a tiny GGUF model loaded both ways."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
import transformers
from test_gguf import TINY, write_tiny_gguf

from polyformer.io.gguf import load_gguf
from polyformer.io.gguf_blocks import decode_blocks
from polyformer.quantized import Blocks, Int4Linear, QuantizedEmbedding, quantized_layers

KINDS = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
         "q8_0": gguf.GGMLQuantizationType.Q8_0}


def _quantized(kind: str, rows: int, cols: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """GGUF bytes of a random (rows, cols) matrix as torch uint8, and gguf's own dequantization."""
    values = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    raw = gguf.quants.quantize(values, KINDS[kind])
    return torch.from_numpy(np.array(raw)), gguf.quants.dequantize(raw, KINDS[kind]).reshape(rows, cols)


def _bf16_scales(blocks: Blocks) -> Blocks:
    """The same blocks with d and m rounded to bfloat16, as the kernel holds them."""
    offset = None if blocks.offset is None else (blocks.offset + 8 * blocks.scale).bfloat16().float() - 8 * blocks.scale.bfloat16().float()
    return Blocks(blocks.kind, blocks.codes, blocks.scale.bfloat16().float(), offset)


@pytest.mark.parametrize("kind", list(KINDS))
def test_decoded_blocks_are_what_gguf_dequantizes(kind: str) -> None:
    raw, expected = _quantized(kind, 48, 96)
    blocks = decode_blocks(raw, 96)
    assert blocks.kind == kind
    assert torch.equal(blocks.dequantize(), torch.from_numpy(np.ascontiguousarray(expected)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_int4_kernel_matches_the_dequantized_matmul(kind: str) -> None:
    raw, _ = _quantized(kind, 64, 128, seed=1)
    blocks = decode_blocks(raw, 128)
    layer = Int4Linear(blocks)
    x = torch.randn(5, 3, 128, generator=torch.Generator().manual_seed(2))
    exact = torch.nn.functional.linear(x, blocks.dequantize())
    got = layer(x)
    assert got.shape == (5, 3, 64) and got.dtype == torch.float32
    # bfloat16 activations and scales: about 3 significant digits of each product's inputs
    assert (got - exact).abs().max() < 0.02 * exact.abs().max()
    # with the same roundings the only difference is the summation
    weight = layer.dequantized()
    assert torch.allclose(weight, _bf16_scales(blocks).dequantize(), atol=1e-2 * float(weight.abs().max()), rtol=0)
    rounded = torch.nn.functional.linear(x.bfloat16().float(), weight)
    assert (got - rounded).abs().max() < 5e-3 * exact.abs().max()


def test_q8_0_nibble_split_is_exact_in_the_kernel_weight() -> None:
    """q = 16 * hi + lo: the two 4-bit halves add back to d * q with bf16(d)."""
    raw, _ = _quantized("q8_0", 32, 64, seed=3)
    blocks = decode_blocks(raw, 64)
    expected = _bf16_scales(blocks).dequantize()
    assert torch.equal(Int4Linear(blocks).dequantized(), expected)


def test_quantized_embedding_rows_are_exact() -> None:
    raw, expected = _quantized("q8_0", 40, 64, seed=4)
    table = QuantizedEmbedding(decode_blocks(raw, 64))
    ids = torch.tensor([[3, 0, 39], [7, 7, 1]])
    assert torch.equal(table(ids), torch.from_numpy(np.ascontiguousarray(expected))[ids])


@pytest.fixture(scope="module")
def tiny_q4(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{**TINY, "tie_word_embeddings": True})
    model = transformers.LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-q4.gguf"
    write_tiny_gguf(path, model, qtype=gguf.GGMLQuantizationType.Q4_1)
    return path


def test_native_load_keeps_blocks_and_greedy_tokens_match_float32(tiny_q4) -> None:
    native, dense = load_gguf(tiny_q4), load_gguf(tiny_q4, dtype="float32")
    assert quantized_layers(native) == {"q4_1": 2 * 4, "q8_0": 2}  # 4 products per layer; the Q8_0 table and its tied head
    assert not any(isinstance(m, torch.nn.Linear) for m in native.modules())
    ids = torch.randint(0, TINY["vocab_size"], (1, 8), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        a, b = native(ids).logits, dense(ids).logits
    assert (a - b).abs().max() < 0.05 * b.abs().max()
    assert torch.equal(native.generate(ids, max_new_tokens=6).sequences, dense.generate(ids, max_new_tokens=6).sequences)


def test_pf_load_dtype_picks_blocks_dense_or_a_precision(tiny_q4) -> None:
    import polyformer as pf
    from polyformer.precision import linear_precisions

    assert quantized_layers(pf.load(tiny_q4)) and not linear_precisions(pf.load(tiny_q4))
    assert not quantized_layers(pf.load(tiny_q4, dtype="float32"))
    assert linear_precisions(pf.load(tiny_q4, dtype="int8")) == {"Int8Linear": 2 * 4 + 1}  # qkv, out, gate/up, down per layer; the head
