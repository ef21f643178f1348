"""The shared core against direct computations: masks, GQA, rotary, post/pre-norm, caches."""

from __future__ import annotations

import math

import pytest
import torch

from polyformer.config import preset
from polyformer.core import KVCache, self_attention_mask
from polyformer.core.positions import Rotary, apply_rotary, sinusoidal_table
from polyformer.models import PolyformerModel


def naive_attention(q, k, v, allowed):
    """softmax(QK^T / sqrt(d)) V with a boolean (T, S) or (B, 1, T, S) mask; keys repeated for GQA."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_module_matches_naive(kv_heads):
    torch.manual_seed(0)
    config = preset("llama-tiny", num_kv_heads=kv_heads, position="learned")
    block = PolyformerModel(config).body.stack.blocks[0].attn.eval()
    x = torch.randn(2, 6, config.hidden_size)
    attention_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    mask = self_attention_mask(attention_mask, 6, 0, causal=True)
    q, k, v = block._project_self(x)
    expected = naive_attention(q, k, v, mask.tensor)
    expected = block.out(expected.transpose(1, 2).reshape(2, 6, -1))
    got = block(x, mask)
    live = attention_mask.bool()
    assert torch.allclose(got[live], expected[live], atol=1e-5)


def test_causal_mask_with_left_padding_never_empty():
    attention_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    mask = self_attention_mask(attention_mask, 4, 0, causal=True).tensor
    assert mask.shape == (2, 1, 4, 4)
    assert mask.any(-1).all()  # every row attends somewhere: no NaN from SDPA
    assert mask[0, 0, 3].tolist() == [False, False, True, True]
    assert mask[1, 0, 1].tolist() == [True, True, False, False]


def test_rotary_is_a_rotation_with_relative_scores():
    rotary = Rotary(8, theta=10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        cq, sq = rotary(torch.tensor([[i]]), torch.float32)
        ck, sk = rotary(torch.tensor([[j]]), torch.float32)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    cos, sin = rotary(torch.tensor([[5]]), torch.float32)
    assert torch.allclose(apply_rotary(q, cos, sin).norm(), q.norm(), atol=1e-5)
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)  # depends only on i - j


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(50, 16)
    pos, i = 7, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert table[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 8 + i].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_decoder_is_causal(name):
    """Changing a later token never changes earlier outputs."""
    torch.manual_seed(0)
    model = PolyformerModel(preset(name, vocab_size=100)).eval()
    ids = torch.randint(0, 100, (1, 8))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 100
    a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)


def test_encoder_is_bidirectional_and_ignores_padding():
    torch.manual_seed(0)
    model = PolyformerModel(preset("bert-tiny", vocab_size=100)).eval()
    ids = torch.randint(1, 100, (1, 6))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 100
    assert not torch.allclose(model(ids).last_hidden_state[:, 0], model(changed).last_hidden_state[:, 0], atol=1e-4)
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    assert torch.allclose(model(padded, mask).last_hidden_state[:, :6], model(ids).last_hidden_state, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_cache_matches_full_forward_with_left_padding(name):
    torch.manual_seed(0)
    model = PolyformerModel(preset(name, vocab_size=100)).eval()
    ids = torch.randint(1, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    full = model(ids, mask, position_ids=positions).logits
    cache = KVCache()
    first = model(ids[:, :6], mask[:, :6], position_ids=positions[:, :6], cache=cache).logits
    steps = [model(ids[:, t : t + 1], mask[:, : t + 1], position_ids=positions[:, t : t + 1], cache=cache).logits for t in range(6, 9)]
    incremental = torch.cat([first, *steps], dim=1)
    live = mask.bool()
    assert torch.allclose(full[live], incremental[live], atol=1e-5)


def test_encoder_decoder_cross_attention_uses_source():
    torch.manual_seed(0)
    model = PolyformerModel(preset("transformer-small", vocab_size=100)).eval()
    src = torch.randint(2, 100, (1, 7))
    tgt = torch.randint(2, 100, (1, 4))
    other = src.clone()
    other[0, 3] = (src[0, 3] + 1) % 100
    assert not torch.allclose(model(src, decoder_input_ids=tgt).logits, model(other, decoder_input_ids=tgt).logits, atol=1e-4)
    cache = KVCache()
    a = model(src, decoder_input_ids=tgt[:, :2], cache=cache)
    b = model(src, decoder_input_ids=tgt[:, 2:], cache=cache, encoder_hidden_states=a.encoder_last_hidden_state)
    full = model(src, decoder_input_ids=tgt).logits
    assert torch.allclose(torch.cat([a.logits, b.logits], 1), full, atol=1e-5)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_norm_placement_changes_the_computation(placement):
    torch.manual_seed(0)
    config = preset("gpt-tiny", vocab_size=50, norm_placement=placement, final_norm=placement == "pre")
    model = PolyformerModel(config).eval()
    block = model.body.stack.blocks[0]
    x = torch.randn(1, 3, config.hidden_size)
    mask = self_attention_mask(None, 3, 0, causal=True)
    if placement == "pre":
        h = x + block.attn(block.attn_norm(x), mask)
        expected = h + block.mlp(block.mlp_norm(h))
    else:
        h = block.attn_norm(x + block.attn(x, mask))
        expected = block.mlp_norm(h + block.mlp(h))
    assert torch.allclose(block(x, mask), expected, atol=1e-6)


def test_document_mask_equals_separate_documents():
    """Two documents packed in one block with document_ids give the same logits as run apart."""
    torch.manual_seed(0)
    model = PolyformerModel(preset("llama-tiny", vocab_size=100)).eval()
    first, second = torch.randint(0, 100, (1, 5)), torch.randint(0, 100, (1, 4))
    packed = torch.cat([first, second], dim=1)
    documents = torch.tensor([[0] * 5 + [1] * 4])
    positions = torch.tensor([list(range(5)) + list(range(4))])
    together = model(packed, position_ids=positions, document_ids=documents).logits
    assert torch.allclose(together[:, :5], model(first).logits, atol=1e-5)
    assert torch.allclose(together[:, 5:], model(second).logits, atol=1e-5)
