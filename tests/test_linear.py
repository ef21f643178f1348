"""The core Linear: oneDNN CPU inference path against F.linear, autograd fallback, kernel switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from polyformer.config import ModelConfig
from polyformer.core import linear as core_linear
from polyformer.core.linear import Linear, cpu_kernel, linear, linear_gelu, set_cpu_kernel
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


def test_training_uses_autograd_and_gets_gradients():
    torch.manual_seed(0)
    layer = Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    assert "mkldnn::_linear_pointwise" not in _ops(lambda: layer(x))
    layer(x).square().sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    F.linear(reference, layer.weight, layer.bias).square().sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


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
        torch.testing.assert_close(fast, mlp(x).detach(), rtol=1e-5, atol=1e-5)
