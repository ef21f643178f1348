"""The core Linear: oneDNN products (inference, training, compiled) against F.linear; the kernel switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from polyformer.config import ModelConfig
from polyformer.core import linear as core_linear
from polyformer.core.linear import Linear, cpu_kernel, linear, linear_gelu, set_cpu_kernel, training_kernel
from polyformer.core.mlp import MLP
from polyformer.errors import ConfigError

needs_onednn = pytest.mark.skipif(not core_linear._onednn_available(), reason="this torch build has no oneDNN")


def _ops(fn) -> set[str]:
    with profile() as prof:
        fn()
    return {event.key for event in prof.key_averages()}


@pytest.fixture
def kernel():
    """Restore the process-wide kernel choice after a test changes it."""
    before = cpu_kernel()
    yield
    set_cpu_kernel(before)


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (1, 48)])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_path_matches_f_linear(shape, bias):
    torch.manual_seed(0)
    x, w = torch.randn(shape), torch.randn(40, 48)
    b = torch.randn(40) if bias else None
    with torch.no_grad():
        out = linear(x, w, b)
        assert "mkldnn::_linear_pointwise" in _ops(lambda: linear(x, w, b))
    assert out.shape == (*shape[:-1], 40)
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@needs_onednn
def test_bfloat16_and_non_contiguous_inputs():
    torch.manual_seed(0)
    x, w, b = torch.randn(6, 48).bfloat16(), torch.randn(40, 48).bfloat16(), torch.randn(40).bfloat16()
    with torch.inference_mode():
        torch.testing.assert_close(linear(x, w, b).float(), F.linear(x, w, b).float(), rtol=2e-2, atol=5e-2)
        strided = torch.randn(48, 6).t()  # (6, 48), not contiguous
        torch.testing.assert_close(linear(strided, w.float()), F.linear(strided, w.float()), rtol=1e-5, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_training_gradients_match_f_linear(bias):
    torch.manual_seed(0)
    layer = Linear(512, 520, bias=bias)  # wide enough for oneDNN in training (TRAINING_ONEDNN_MIN_FEATURES)
    x = torch.randn(3, 5, 512, requires_grad=True)
    target = torch.randn(3, 5, 520)
    assert "mkldnn::_linear_pointwise" in _ops(lambda: layer(x).sum().backward())
    x.grad = None
    layer.zero_grad(set_to_none=True)
    (layer(x) - target).square().sum().backward()
    got = [x.grad, layer.weight.grad] + ([layer.bias.grad] if bias else [])
    reference_x = x.detach().clone().requires_grad_(True)
    weight = layer.weight.detach().clone().requires_grad_(True)
    reference_bias = layer.bias.detach().clone().requires_grad_(True) if bias else None
    (F.linear(reference_x, weight, reference_bias) - target).square().sum().backward()
    expected = [reference_x.grad, weight.grad] + ([reference_bias.grad] if bias else [])
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_narrow_training_products_take_f_linear_and_inference_keeps_onednn():
    layer = Linear(128, 384)
    x = torch.randn(2, 7, 128, requires_grad=True)
    assert training_kernel(layer.weight) == "blas" and training_kernel(torch.empty(768, 512)) == "onednn"
    assert "mkldnn::_linear_pointwise" not in _ops(lambda: layer(x).sum().backward())
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in _ops(lambda: layer(x))


def test_frozen_weight_and_autocast_still_train():
    torch.manual_seed(0)
    layer = Linear(16, 8)
    layer.weight.requires_grad_(False)
    x = torch.randn(4, 16, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, layer.weight.sum(0).expand(4, 16), rtol=1e-5, atol=1e-5)
    assert layer.weight.grad is None and layer.bias.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # autocast keeps deciding the dtype


@needs_onednn
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_gelu_matches_separate(approximate):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 9, 32), torch.randn(64, 32), torch.randn(64)
    with torch.no_grad():
        torch.testing.assert_close(linear_gelu(x, w, b, approximate), F.gelu(F.linear(x, w, b), approximate=approximate), rtol=1e-5, atol=1e-4)


def test_blas_switch_is_exactly_f_linear(kernel):
    torch.manual_seed(0)
    x, w, b = torch.randn(5, 48), torch.randn(40, 48), torch.randn(40)
    set_cpu_kernel("blas")
    assert cpu_kernel() == "blas"
    with torch.no_grad():
        assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    with pytest.raises(ConfigError, match="not one of onednn, blas"):
        set_cpu_kernel("mkl")


@needs_onednn
def test_mlp_inference_equals_training_forward():
    torch.manual_seed(0)
    for activation in ("gelu", "gelu_new", "swiglu"):
        config = ModelConfig(vocab_size=10, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, activation=activation)
        mlp = MLP(config).eval()
        x = torch.randn(2, 5, 32)
        with torch.no_grad():
            fast = mlp(x)
            if activation != "swiglu":  # the GELU runs inside the up-projection, not as its own op
                assert "aten::gelu" not in _ops(lambda: mlp(x))
        torch.testing.assert_close(fast, mlp(x).detach(), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_compiled_inference_calls_the_custom_op():
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 48), torch.randn(40, 48), torch.randn(40)
    compiled = torch.compile(lambda x: linear(x, w, b), backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        out = compiled(x)
        assert "polyformer::onednn_linear" in _ops(lambda: compiled(x))
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("value", "expected", "warns"), [("blas", "blas", False), ("BLAS", "blas", False), ("mkl", "onednn", True)])
def test_environment_variable_picks_the_kernel(value, expected, warns):
    code = "import warnings; warnings.simplefilter('always'); from polyformer.core.linear import cpu_kernel; print(cpu_kernel())"
    env = {**os.environ, "POLYFORMER_CPU_LINEAR": value}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if expected == "onednn" and not core_linear._onednn_available():
        expected = "blas"
    assert done.stdout.strip() == expected
    assert ("is not one of onednn, blas" in done.stderr) == warns
