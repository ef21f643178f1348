"""Reduced-precision linear layers: what they store, how close they compute, what they leave alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polyformer.config import preset
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel
from polyformer.precision import (
    INT8_KERNEL_MAX_ROWS,
    BF16Linear,
    Int8Linear,
    apply_precision,
    linear_precisions,
    parse_precision,
    prepare,
)


def test_int8_rows_hold_the_weight_to_half_a_quantization_step():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    layer = Int8Linear(linear)
    assert layer.qweight.dtype == torch.int8 and layer.qweight.abs().max() == 127
    step = linear.weight.abs().amax(1, keepdim=True) / 127  # (out, 1)
    # rounding to the nearest step, plus bfloat16 rounding of the scale and of the product (2^-8 each)
    assert ((layer.dequantized().float() - linear.weight).abs() <= step * 0.5 + linear.weight.abs() * 2**-7).all()


def test_int8_groups_scale_each_block_of_columns_and_multiply_with_that_weight():
    torch.manual_seed(0)
    linear = nn.Linear(128, 24)
    layer = Int8Linear(linear, group_size=32)
    assert layer.scale.shape == (24, 4)
    step = linear.weight.view(24, 4, 32).abs().amax(-1, keepdim=True).expand(24, 4, 32).reshape(24, 128) / 127
    assert ((layer.dequantized().float() - linear.weight).abs() <= step * 0.5 + linear.weight.abs() * 2**-7).all()
    assert (layer.dequantized().float() - linear.weight).abs().mean() < (Int8Linear(linear).dequantized().float() - linear.weight).abs().mean()
    x = torch.randn(3, 128)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x.bfloat16().float(), layer.dequantized().float(), linear.bias)
        torch.testing.assert_close(layer(x), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("rows", [1, INT8_KERNEL_MAX_ROWS, INT8_KERNEL_MAX_ROWS + 1, 40])
def test_int8_kernel_and_dequantized_paths_agree_with_the_dequantized_weight(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 80)
    layer = Int8Linear(linear)
    x = torch.randn(rows, 1, 96)  # `rows` rows reach the layer
    expected = x.to(torch.bfloat16).float() @ layer.dequantized().float().T + linear.bias
    got = layer(x)
    assert got.shape == (rows, 1, 80) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=0.05, rtol=0.02)
    assert torch.allclose(got, linear(x), atol=0.1, rtol=0.05)
    assert (layer._dequantized is not None) == (rows > INT8_KERNEL_MAX_ROWS)  # kept once a large product needed it


@pytest.mark.parametrize("rows", [1, 3])  # one row: the matrix-vector path
def test_bf16_linear_keeps_the_input_dtype(rows):
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    layer = BF16Linear(linear)
    x = torch.randn(1, rows, 32)
    out = layer(x)
    assert out.shape == (1, rows, 16)
    assert layer.weight.dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.allclose(out, linear(x), atol=0.05)


def test_apply_precision_converts_every_linear_but_not_embeddings():
    torch.manual_seed(0)
    model = PolyformerModel(preset("llama-tiny", vocab_size=64)).eval()
    linears = linear_precisions(model)["Linear"]
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        reference = model(ids).logits
        apply_precision(model, "int8", exclude=["body.stack.blocks.0"])
        quantized = model(ids).logits
    assert linear_precisions(model) == {"Int8Linear": linears - 4, "Linear": 4}  # block 0: qkv, out, MLP up, down
    assert model.embeddings.tokens.weight.dtype == torch.float32
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9
    assert (quantized - reference).abs().max() < 0.1 * reference.abs().max()


def test_a_tied_lm_head_gets_its_own_copy_and_the_embedding_keeps_float32():
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64)).eval()
    assert model.head.proj.weight is model.embeddings.tokens.weight
    apply_precision(model, "bf16")
    assert isinstance(model.head.proj, BF16Linear) and model.head.proj.weight.dtype == torch.bfloat16
    assert model.embeddings.tokens.weight.dtype == torch.float32


def test_precision_names_and_prepare():
    assert parse_precision("BF16") == "bfloat16" and parse_precision("fp32") == "float32"
    with pytest.raises(ConfigError, match="float32, bfloat16, int8"):
        parse_precision("int3")
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64))
    assert prepare(model, "cpu", torch.float32) is model and not model.training
    assert linear_precisions(prepare(model, "cpu", "int8")) == {"Int8Linear": linear_precisions(model)["Int8Linear"]}
