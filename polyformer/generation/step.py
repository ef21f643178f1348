"""The model calls of the decode loop: prefill, then one token per row per step.

`ModelSteps` owns one batched request's KV cache, positions and masks. `prefill` runs the prompt
(decoders) or the encoder and the start token (encoder–decoders) and `advance` feeds one token
per row; both return next-token logits (B, V), taking only the last position through the LM
head. Nothing is allocated per step beyond what the model itself computes: the attention mask
of a decoder is built once for prompt + new tokens and sliced, positions are bumped in place.

With a `StaticKVCache` every decode step has the same shapes: `decode_step` runs the blocks
with a key mask over the whole pre-allocated length, writing keys/values at a position tensor.
That fixed-shape function is what `torch.compile` captures (on CUDA as a CUDA graph, mode
"reduce-overhead"), so a step replays without Python or kernel-launch overhead.
"""

from __future__ import annotations

import torch

from polyformer.core import KVCache, Mask, padding_mask
from polyformer.core.cache import StaticKVCache
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel

COMPILED_LENGTH_STEP = 256  # compiled steps' caches round their length up, so few graphs are compiled


def decode_step(model: PolyformerModel, cache: StaticKVCache, tokens: torch.Tensor, positions: torch.Tensor,
                key_mask: torch.Tensor, memory_mask: Mask | None = None) -> torch.Tensor:
    """One fixed-shape step of the causal stack: tokens, positions (B, 1) → next-token logits (B, V).

    cache is in fixed-shape mode (`write_index` set); key_mask (B, 1, 1, max_length) is additive
    (0 or -inf, built once per step rather than once per layer): 0 on the cache slots each row may
    attend to, its real prompt tokens and every slot written so far, this step's included.
    memory_mask: the source padding mask of an encoder–decoder.
    """
    body = model.body
    stack = body.stack if model.config.arch == "decoder" else body.decoder
    x = body.embeddings(tokens, positions)  # (B, 1, hidden)
    rotary = stack.rotary(positions, x.dtype) if stack.rotary is not None else None
    mask = Mask(key_mask)
    for index, block in enumerate(stack.blocks):
        x = block(x, mask, rotary, cache, index, None, memory_mask)
    if stack.final_norm is not None:
        x = stack.final_norm(x)
    return model.head(x[:, -1])


_compiled: dict[str, object] = {}


def compiled_decode_step(device: torch.device):
    """`decode_step` under torch.compile: a CUDA graph on CUDA, inductor kernels on CPU."""
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    if mode not in _compiled:
        _compiled[mode] = torch.compile(decode_step, mode=mode, fullgraph=True, dynamic=False)  # one graph per shape
    return _compiled[mode]


def choose_cache(cache: str, compile: bool | None, device: torch.device) -> tuple[str, bool]:
    """Resolve "auto": on CUDA a static cache and a compiled step; on CPU the dynamic cache, eager."""
    use_compile = device.type == "cuda" if compile is None else compile
    if cache == "auto":
        cache = "static" if use_compile else "dynamic"
    if use_compile and cache != "static":
        raise ConfigError("compile=True needs cache='static' (compiled steps have fixed shapes)")
    return cache, use_compile


class ModelSteps:
    """Prefill and one-token steps for one batched request (left-padded decoder prompts, right-padded sources)."""

    def __init__(self, model: PolyformerModel, input_ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                 cache: str = "dynamic", compile: bool = False) -> None:
        self.model, self.input_ids, self.mask = model, input_ids, mask
        self.static, self.compile = cache == "static", compile
        self.encoder_decoder = model.config.arch == "encoder-decoder"
        batch, prompt = input_ids.shape
        device = input_ids.device
        self.length = 1 if self.encoder_decoder else prompt  # decoder positions filled so far
        total = self.length + max_new_tokens
        if self.static:
            if compile:  # requests of other lengths reuse the compiled step (and its CUDA graph)
                total = -(-total // COMPILED_LENGTH_STEP) * COMPILED_LENGTH_STEP
            self.cache: KVCache | StaticKVCache = StaticKVCache.for_model(model.config, batch, total, model.dtype, device)
            if compile:
                for buffer in self.cache.buffers():
                    torch._dynamo.mark_static_address(buffer)
            self.key_mask = torch.full((batch, 1, 1, total), float("-inf"), dtype=model.dtype, device=device)  # (B, 1, 1, S)
            attended = mask.bool() if not self.encoder_decoder else torch.ones(batch, 1, dtype=torch.bool, device=device)
            self.key_mask[:, 0, 0, : self.length].masked_fill_(attended, 0.0)
            self.write_index = torch.tensor([self.length], device=device)
            self.step_fn = compiled_decode_step(device) if compile else decode_step
        else:
            self.cache = KVCache()
        if not self.encoder_decoder:
            # (B, prompt + new): the prompt's padding, then every new token attended; None without padding
            padded = bool((mask == 0).any())
            self.full_mask = torch.cat([mask, mask.new_ones(batch, max_new_tokens)], dim=1) if padded else None

    def prefill(self) -> torch.Tensor:
        """Next-token logits (B, V) after the prompt (decoders) or the start token (encoder–decoders)."""
        body, config = self.model.body, self.model.config
        if self.encoder_decoder:
            start = config.decoder_start_token_id
            start = config.pad_token_id if start is None else start
            first = torch.full((self.input_ids.shape[0], 1), start or 0, device=self.input_ids.device)
            self.memory = body.encode(self.input_ids, self.mask)  # (B, S, hidden), reused every step
            self.memory_mask = padding_mask(self.mask)
            self.positions = torch.zeros(1, 1, dtype=torch.long, device=self.input_ids.device)
            hidden = body.decode(first, self.memory, self.mask, None, self.cache)
        else:
            positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (B, T) left padding: count real tokens
            hidden = body(self.input_ids, self.mask, positions, self.cache)
            self.positions = positions[:, -1:].clone()  # (B, 1)
        if self.static:
            self.cache.write_index = self.write_index
        return self.model.head(hidden[:, -1])

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (B,); next-token logits (B, V)."""
        self.positions += 1
        self.length += 1
        step_ids = tokens[:, None]  # (B, 1)
        if self.static:
            return self._static_step(step_ids)
        body = self.model.body
        if self.encoder_decoder:
            hidden = body.decode(step_ids, self.memory, self.mask, None, self.cache)
        else:
            step_mask = self.full_mask[:, : self.length] if self.full_mask is not None else None
            hidden = body(step_ids, step_mask, self.positions, self.cache)
        return self.model.head(hidden[:, -1])

    def _static_step(self, step_ids: torch.Tensor) -> torch.Tensor:
        self.key_mask.index_fill_(-1, self.write_index, 0.0)
        if self.compile:
            torch.compiler.cudagraph_mark_step_begin()
        memory_mask = self.memory_mask if self.encoder_decoder else None
        logits = self.step_fn(self.model, self.cache, step_ids, self.positions, self.key_mask, memory_mask)
        self.write_index += 1
        self.cache.advance(1)
        cuda_graph = self.compile and logits.device.type == "cuda"
        return logits.clone() if cuda_graph else logits  # a CUDA graph overwrites its output at the next replay
