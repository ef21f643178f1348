"""The three forms of the Transformer, composed from the one core, and the model with its head.

- `Encoder`: embeddings + a bidirectional stack (BERT).
- `Decoder`: embeddings + a causal stack (GPT-2, Llama).
- `EncoderDecoder`: shared embeddings, a bidirectional stack and a causal stack whose blocks
  cross-attend to the encoder output (the original Transformer, Marian).

`PolyformerModel` picks the body from `config.arch` and the head from `config.head`; its
forward returns a `ModelOutput` with `last_hidden_state` always and `logits` when there is a head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from polyformer.core import Embeddings, KVCache, Mask, RMSNorm, Stack
from polyformer.errors import ConfigError
from polyformer.heads import HEAD_PARAMETERS, Classifier, Pooler, build_head, head_kind, pooled_for_classification

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.core.cache import StaticKVCache


@dataclass
class ModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, hidden); the decoder's for encoder–decoders
    logits: torch.Tensor | None = None  # (B, T, V) LM/MLM, (B, labels) sequence, (B, T, labels) token, (B, T, 2) QA
    pooler_output: torch.Tensor | None = None  # (B, hidden) BERT's pooler
    nsp_logits: torch.Tensor | None = None  # (B, 2) next-sentence prediction
    start_logits: torch.Tensor | None = None  # (B, T) extractive QA
    end_logits: torch.Tensor | None = None  # (B, T)
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, hidden) encoder–decoders
    cache: KVCache | None = None


def default_positions(input_ids: torch.Tensor, past: int) -> torch.Tensor:
    """Positions past .. past+T-1, shaped (1, T) to broadcast over the batch."""
    return torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None, :]


def _positions(input_ids: torch.Tensor, position_ids: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
    """The given positions, else those after what the cache holds."""
    if position_ids is not None:
        return position_ids
    return default_positions(input_ids, cache.seq_length() if cache is not None else 0)


@dataclass
class BodyOutput:
    hidden: torch.Tensor  # (B, T, hidden): the decoder's for encoder–decoders
    memory: torch.Tensor | None = None  # (B, S, hidden): an encoder–decoder's encoder output


class Body(nn.Module):
    """What every body offers, with one keyword-only signature; a body lacks the stack it does not have.

    `encode` runs the bidirectional stack over input_ids, `decode` the causal stack (after what
    `cache` holds, cross-attending to `memory` in an encoder–decoder); `forward` runs the body
    as a whole. Masks are (B, S) 0/1 tensors, or a ready `Mask` (fixed-shape decode steps).
    """

    embeddings: Embeddings

    def encode(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
               document_ids: torch.Tensor | None = None) -> torch.Tensor:
        raise ConfigError("a decoder has no bidirectional encoder; use its hidden states or decode steps")

    def decode(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | Mask | None = None,
               position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
               memory: torch.Tensor | None = None, memory_attention_mask: torch.Tensor | Mask | None = None,
               document_ids: torch.Tensor | None = None) -> torch.Tensor:
        raise ConfigError("an encoder has no causal decoder; it cannot take decode steps")

    def hidden_states(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        """The states a reader without a head wants: the encoder's when there is one, else the decoder's."""
        return self.encode(input_ids, attention_mask=attention_mask)

    def forward(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                document_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None) -> BodyOutput:
        raise NotImplementedError


class Encoder(Body):
    """Embeddings + a bidirectional stack (BERT)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.stack = Stack(config, config.num_layers, causal=False)

    def encode(self, input_ids, *, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None):
        position_ids = _positions(input_ids, position_ids, None)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        return self.stack(x, attention_mask=attention_mask, position_ids=position_ids, document_ids=document_ids)

    def forward(self, input_ids, *, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None,
                cache=None, decoder_input_ids=None, decoder_attention_mask=None, encoder_hidden_states=None):
        return BodyOutput(self.encode(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                      position_ids=position_ids, document_ids=document_ids))


class Decoder(Body):
    """Embeddings + a causal stack (GPT-2, Llama)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.stack = Stack(config, config.num_layers, causal=True)

    def decode(self, input_ids, *, attention_mask=None, position_ids=None, cache=None, memory=None,
               memory_attention_mask=None, document_ids=None):
        position_ids = _positions(input_ids, position_ids, cache)
        x = self.embeddings(input_ids, position_ids)
        return self.stack(x, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                          document_ids=document_ids)

    def hidden_states(self, input_ids, *, attention_mask=None, cache=None):
        return self.decode(input_ids, attention_mask=attention_mask, cache=cache)

    def forward(self, input_ids, *, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None,
                cache=None, decoder_input_ids=None, decoder_attention_mask=None, encoder_hidden_states=None):
        return BodyOutput(self.decode(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                                      document_ids=document_ids))


class EncoderDecoder(Body):
    """Shared embeddings, a bidirectional stack and a causal stack cross-attending to it (Marian)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Stack(config, config.num_layers, causal=False)
        self.decoder = Stack(config, config.decoder_layers, causal=True, cross=True)

    def encode(self, input_ids, *, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None):
        position_ids = _positions(input_ids, position_ids, None)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        return self.encoder(x, attention_mask=attention_mask, position_ids=position_ids, document_ids=document_ids)

    def decode(self, input_ids, *, attention_mask=None, position_ids=None, cache=None, memory=None,
               memory_attention_mask=None, document_ids=None):
        position_ids = _positions(input_ids, position_ids, cache)
        x = self.embeddings(input_ids, position_ids)
        return self.decoder(x, attention_mask=attention_mask, position_ids=position_ids, cache=cache, memory=memory,
                            memory_attention_mask=memory_attention_mask, document_ids=document_ids)

    def forward(self, input_ids, *, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None,
                cache=None, decoder_input_ids=None, decoder_attention_mask=None, encoder_hidden_states=None):
        if decoder_input_ids is None:
            raise ConfigError(
                "an encoder-decoder model needs decoder_input_ids (the target shifted right, "
                "starting with decoder_start_token_id)"
            )
        memory = encoder_hidden_states
        if memory is None:
            memory = self.encode(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                 position_ids=position_ids, document_ids=document_ids)
        hidden = self.decode(decoder_input_ids, attention_mask=decoder_attention_mask, cache=cache, memory=memory,
                             memory_attention_mask=attention_mask)
        return BodyOutput(hidden, memory)


_BODIES = {"encoder": Encoder, "decoder": Decoder, "encoder-decoder": EncoderDecoder}


class PolyformerModel(nn.Module):
    """A body chosen by config.arch plus the head chosen by config.head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.body = _BODIES[config.arch](config)
        self.pooler = Pooler(config) if config.pooler else None
        self.head = build_head(config)
        self.nsp = Classifier(config, 2) if head_kind(config).nsp else None
        self.apply(_init_weights)
        self.tie_weights()

    # ---- structure -----------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.body.embeddings

    def vocab_projection(self) -> nn.Linear | None:
        """The head's projection onto the vocabulary, when the head has one."""
        return self.head.proj if head_kind(self.config).vocabulary else None

    def tie_weights(self) -> None:
        """Share the vocabulary projection with the token embeddings when the config says so."""
        proj = self.vocab_projection()
        if proj is not None and self.config.tie_word_embeddings:
            proj.weight = self.embeddings.tokens.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared tensors are counted once

    @property
    def device(self) -> torch.device:
        tokens = self.embeddings.tokens  # an nn.Embedding, or a quantized table with its own device / dtype
        return tokens.weight.device if isinstance(tokens, nn.Embedding) else tokens.device

    @property
    def dtype(self) -> torch.dtype:
        tokens = self.embeddings.tokens
        return tokens.weight.dtype if isinstance(tokens, nn.Embedding) else tokens.dtype

    # ---- forward -------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) → ModelOutput. Encoder–decoders also take decoder_input_ids (B, T').

        document_ids (B, T) confines attention to each packed document (training on packed blocks).
        """
        states = self.body(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            document_ids=document_ids, cache=cache, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, encoder_hidden_states=encoder_hidden_states,
        )
        out = ModelOutput(last_hidden_state=states.hidden, encoder_last_hidden_state=states.memory, cache=cache)
        if self.pooler is not None:
            out.pooler_output = self.pooler(states.hidden)
        self._apply_head(out, decoder_attention_mask if states.memory is not None else attention_mask)
        return out

    # ---- the surface generation, embeddings and prompting build on -----------------------
    def hidden_states(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        """(B, T) ids → (B, T, hidden) last hidden states, no head: an encoder–decoder's encoder output.

        A decoder continues after what `cache` holds (and adds this input to it).
        """
        return self.body.hidden_states(input_ids, attention_mask=attention_mask, cache=cache)

    def encode(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) source ids → (B, S, hidden): the memory an encoder–decoder's decode steps attend to."""
        return self.body.encode(input_ids, attention_mask=attention_mask)

    def decode_step(self, input_ids: torch.Tensor, *, cache: KVCache | StaticKVCache,
                    attention_mask: torch.Tensor | Mask | None = None, position_ids: torch.Tensor | None = None,
                    memory: torch.Tensor | None = None,
                    memory_attention_mask: torch.Tensor | Mask | None = None) -> torch.Tensor:
        """Feed input_ids (B, T) through the causal stack after what `cache` holds → next-token logits (B, V).

        attention_mask covers the cached and the new positions (B, past + T), or is a ready `Mask`;
        position_ids (B, T) default to those after the cache. Encoder–decoders take the encoder's
        `memory` and its padding mask (memory may be left out once the cache holds its keys/values).
        Only the last position goes through the head.
        """
        hidden = self.body.decode(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                                  memory=memory, memory_attention_mask=memory_attention_mask)
        return self.head(hidden[:, -1])

    # ---- generation ----------------------------------------------------------------------
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, config=None, *,
                 stream: bool = False, **options):
        """New tokens for a left-padded batch of prompts (B, T); for encoder–decoders, right-padded sources.

        `options` are `GenerationConfig` fields (max_new_tokens, temperature, top_k, top_p, min_p,
        repetition_penalty, eos_token_id, seed, num_beams, num_return_sequences, ...) or
        transformers' `do_sample`, and override `config`. Returns a `GenerationOutput` (each
        prompt's num_return_sequences rows together); with `stream=True`, an iterator over each
        step's new tokens (B,).
        For text in and out, see `polyformer.generation.text_pipeline.TextGenerationPipeline`.
        """
        # the one import up a layer (generation builds on this model's surface and never imports it back)
        from polyformer.generation.decoding import generate_with_options

        return generate_with_options(self, input_ids, attention_mask, config, streaming=stream, **options)

    def _apply_head(self, out: ModelOutput, attention_mask: torch.Tensor | None) -> None:
        output, hidden = head_kind(self.config).output, out.last_hidden_state
        if output == "tokens":
            out.logits = self.head(hidden)
        elif output == "pooled":
            out.logits = self.head(pooled_for_classification(self.config, hidden, attention_mask, out.pooler_output))
        elif output == "spans":
            out.logits = self.head(hidden)  # (B, T, 2)
            out.start_logits, out.end_logits = out.logits.unbind(dim=-1)
        if self.nsp is not None:
            out.nsp_logits = self.nsp(out.pooler_output)


def with_fresh_head(model: PolyformerModel, config: ModelConfig) -> PolyformerModel:
    """A model of `config` with `model`'s weights; a different head (NSP, a new pooler) starts from initialisation.

    The body must match: a weight of the new body that `model` lacks is a ConfigError. Tied
    vocabulary projections follow the copied embeddings.
    """
    fresh = PolyformerModel(config)
    wanted = fresh.state_dict()
    dropped = HEAD_PARAMETERS if config.head != model.config.head else ()  # the same head keeps its weights
    body = {name: tensor for name, tensor in model.state_dict().items()
            if not (dropped and name.startswith(dropped)) and name in wanted}
    missing, _ = fresh.load_state_dict(body, strict=False)
    left = [name for name in missing if not name.startswith((*HEAD_PARAMETERS, "pooler."))]
    if left:
        raise ConfigError(f"cannot move the body onto a {config.head} head: the checkpoint lacks {left[:3]}")
    return fresh.to(device=model.device, dtype=model.dtype).train(model.training)


class Headless(nn.Module):
    """A model's body without its head: hidden states only, sharing (not copying) the parameters.

    For training code that must see no parameter without a gradient (DDP); state-dict keys are
    `body.*` as in PolyformerModel.
    """

    def __init__(self, model: PolyformerModel) -> None:
        super().__init__()
        self.body = model.body
        self.config = model.config

    def hidden_states(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        """(B, T) → (B, T, hidden), as `PolyformerModel.hidden_states`."""
        return self.body.hidden_states(input_ids, attention_mask=attention_mask, cache=cache)


def _init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) weights, zero biases, unit norms (BERT / GPT-2 initialisation)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, RMSNorm)):
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
