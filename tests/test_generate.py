"""Batched generation, beam search and text streaming agree with transformers and with themselves."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.errors import ConfigError, DataError
from polyformer.generation import GenerationConfig, generate, stream

VOCAB = 97


def perturb(model: torch.nn.Module) -> None:
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)


def tiny_hf(kind: str, directory):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_head=4, n_layer=2,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                          num_hidden_layers=2, intermediate_size=48, max_position_embeddings=64,
                                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = transformers.LlamaForCausalLM(config)
    model.eval()
    perturb(model)
    model.save_pretrained(directory)
    return model


def left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts of lengths 7 and 4, left-padded with 0."""
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids.masked_fill(mask == 0, 0), mask


def hf_new_tokens(ref, ids, mask, **kwargs) -> list[list[int]]:
    with torch.no_grad():
        out = ref.generate(input_ids=ids, attention_mask=mask, pad_token_id=0, eos_token_id=2, **kwargs)
    return out[:, ids.shape[1]:].tolist()


def ours_new_tokens(result) -> list[list[int]]:
    return [row[:n] for row, n in zip(result.sequences.tolist(), result.lengths)]


def strip_pad(rows: list[list[int]], lengths: list[int]) -> list[list[int]]:
    return [row[:n] for row, n in zip(rows, lengths)]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_batched_greedy_matches_transformers(kind, tmp_path):
    ref = tiny_hf(kind, tmp_path / kind)
    model = pf.load(tmp_path / kind)
    ids, mask = left_padded()
    result = generate(model, ids, mask, GenerationConfig(max_new_tokens=12, eos_token_id=2))
    expected = hf_new_tokens(ref, ids, mask, do_sample=False, max_new_tokens=12)
    assert strip_pad(expected, result.lengths) == ours_new_tokens(result)
    assert all(r in ("stop", "length") for r in result.finish_reasons)
    assert result.logprobs.shape == result.sequences.shape
    assert (result.logprobs <= 0).all()
