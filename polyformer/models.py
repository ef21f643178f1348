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

import torch
from torch import nn

from polyformer.config import ModelConfig
from polyformer.core import Embeddings, KVCache, RMSNorm, Stack
from polyformer.errors import ConfigError
from polyformer.heads import Classifier, Pooler, build_head, pooled_for_classification


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


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.stack = Stack(config, config.num_layers, causal=False)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, document_ids=None) -> torch.Tensor:
        if position_ids is None:
            position_ids = default_positions(input_ids, 0)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        return self.stack(x, attention_mask, position_ids, document_ids=document_ids)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.stack = Stack(config, config.num_layers, causal=True)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None, document_ids=None) -> torch.Tensor:
        if position_ids is None:
            position_ids = default_positions(input_ids, cache.seq_length() if cache is not None else 0)
        x = self.embeddings(input_ids, position_ids)
        return self.stack(x, attention_mask, position_ids, cache, document_ids=document_ids)


class EncoderDecoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Stack(config, config.num_layers, causal=False)
        self.decoder = Stack(config, config.decoder_layers, causal=True, cross=True)

    def encode(self, input_ids, attention_mask=None) -> torch.Tensor:
        position_ids = default_positions(input_ids, 0)
        return self.encoder(self.embeddings(input_ids, position_ids), attention_mask, position_ids)

    def decode(self, decoder_input_ids, memory, memory_attention_mask=None, decoder_attention_mask=None, cache=None):
        position_ids = default_positions(decoder_input_ids, cache.seq_length() if cache is not None else 0)
        x = self.embeddings(decoder_input_ids, position_ids)
        return self.decoder(x, decoder_attention_mask, position_ids, cache, memory, memory_attention_mask)


_BODIES = {"encoder": Encoder, "decoder": Decoder, "encoder-decoder": EncoderDecoder}


class PolyformerModel(nn.Module):
    """A body chosen by config.arch plus the head chosen by config.head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.body = _BODIES[config.arch](config)
        self.pooler = Pooler(config) if config.pooler else None
        self.head = build_head(config)
        self.nsp = Classifier(config, 2) if config.head == "pretraining" else None
        self.apply(_init_weights)
        self.tie_weights()

    # ---- structure -----------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.body.embeddings

    def vocab_projection(self) -> nn.Linear | None:
        """The head's projection onto the vocabulary, when the head has one."""
        return getattr(self.head, "proj", None) if self.config.head in ("mlm", "pretraining", "lm") else None

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
        encoder_out = None
        if self.config.arch == "encoder":
            hidden = self.body(input_ids, attention_mask, token_type_ids, position_ids, document_ids)
        elif self.config.arch == "decoder":
            hidden = self.body(input_ids, attention_mask, position_ids, cache, document_ids)
        else:
            if decoder_input_ids is None:
                raise ConfigError(
                    "an encoder-decoder model needs decoder_input_ids (the target shifted right, "
                    "starting with decoder_start_token_id)"
                )
            encoder_out = encoder_hidden_states if encoder_hidden_states is not None else self.body.encode(input_ids, attention_mask)
            hidden = self.body.decode(decoder_input_ids, encoder_out, attention_mask, decoder_attention_mask, cache)
            attention_mask = decoder_attention_mask
        out = ModelOutput(last_hidden_state=hidden, encoder_last_hidden_state=encoder_out, cache=cache)
        if self.pooler is not None:
            out.pooler_output = self.pooler(hidden)
        self._apply_head(out, attention_mask)
        return out

    # ---- generation ----------------------------------------------------------------------
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, config=None, *,
                 stream: bool = False, **options):
        """New tokens for a left-padded batch of prompts (B, T); for encoder–decoders, right-padded sources.

        `options` are `GenerationConfig` fields (max_new_tokens, temperature, top_k, top_p, min_p,
        repetition_penalty, eos_token_id, seed, num_beams, num_return_sequences, ...) or
        transformers' `do_sample`, and override `config`. Returns a `GenerationOutput` (each
        prompt's num_return_sequences rows together); with `stream=True`, an iterator over each
        step's new tokens (B,).
        For text in and out, see `polyformer.generation.pipeline.TextGenerationPipeline`.
        """
        from polyformer.generation import engine  # generation builds on the models, never the reverse
        from polyformer.generation.sampling import make_config

        request = make_config(config, **options)
        if stream:
            return engine.stream(self, input_ids, attention_mask, request)
        return engine.generate(self, input_ids, attention_mask, request)

    def _apply_head(self, out: ModelOutput, attention_mask: torch.Tensor | None) -> None:
        head, hidden = self.config.head, out.last_hidden_state
        if head in ("mlm", "pretraining", "lm", "token-classification"):
            out.logits = self.head(hidden)
        elif head == "sequence-classification":
            out.logits = self.head(pooled_for_classification(self.config, hidden, attention_mask, out.pooler_output))
        elif head == "question-answering":
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
    dropped = ("head.", "nsp.") if config.head != model.config.head else ()  # the same head keeps its weights
    body = {name: tensor for name, tensor in model.state_dict().items()
            if not (dropped and name.startswith(dropped)) and name in wanted}
    missing, _ = fresh.load_state_dict(body, strict=False)
    left = [name for name in missing if not name.startswith(("head.", "nsp.", "pooler."))]
    if left:
        raise ConfigError(f"cannot move the body onto a {config.head} head: the checkpoint lacks {left[:3]}")
    return fresh.to(device=model.device, dtype=model.dtype).train(model.training)


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
