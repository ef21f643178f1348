"""Attention maps: the weights of every layer and head on one text, and heatmaps of them.

    maps = attention_maps(model, tokenizer, "The quality of mercy is not strained.")
    maps = attention_maps(marian, tokenizer, "In the beginning", target="En el principio")  # + cross-attention
    plot_maps(maps, "maps.png", layer=0)

The model runs once inside `polyformer.core.attention.recording_attention`, where attention takes
the explicit path softmax(QKᵀ/√d + mask)·V (the same output as SDPA) and records its weights.
An encoder gives bidirectional maps; a decoder causal maps (zero above the diagonal); an
encoder–decoder its encoder's bidirectional maps, its decoder's causal maps over the target and
the cross-attention of each target token over the source. A map is (heads, queries, keys), each
row a probability distribution over the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch

from polyformer.core.attention import recording_attention
from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel

MapKind = Literal["bidirectional", "causal", "cross"]
MAP_KINDS: tuple[MapKind, ...] = get_args(MapKind)
MAX_PANELS = 64  # without --layer, only the last layers that fit are drawn
_MARKERS = {"Ġ": "␣", "Ċ": "↵", "▁": "␣"}


@dataclass
class AttentionMap:
    """The weights of one attention module on one input."""

    stack: str  # encoder | decoder
    kind: MapKind
    layer: int
    query_tokens: list[str]
    key_tokens: list[str]
    weights: np.ndarray  # (heads, queries, keys)

    @property
    def title(self) -> str:
        return f"{self.stack} layer {self.layer} {self.kind}"


def _display(tokens: list[str | None]) -> list[str]:
    shown = []
    for token in tokens:
        text = token or "?"
        for marker, replacement in _MARKERS.items():
            text = text.replace(marker, replacement)
        shown.append(text)
    return shown


def _inputs(model: PolyformerModel, tokenizer, text: str, target: str | None) -> tuple[dict[str, torch.Tensor], list[int], list[int]]:
    """Model inputs and the source / target ids."""
    if not text:
        raise ConfigError("--text is empty: give the sentence to draw attention on")
    source = tokenizer.encode(text)[: model.config.max_positions]
    inputs = {"input_ids": torch.tensor([source], device=model.device)}
    if model.config.arch != "encoder-decoder":
        if target:
            raise ConfigError("--target is for encoder-decoder models (cross-attention); this model is a "
                              f"{model.config.arch}")
        return inputs, source, []
    start = model.config.decoder_start_token_id
    start = start if start is not None else (tokenizer.pad_token_id or 0)
    target_ids = [start, *tokenizer.encode(target or text, add_special_tokens=False)][: model.config.max_positions]
    inputs["decoder_input_ids"] = torch.tensor([target_ids], device=model.device)
    return inputs, source, target_ids


def _where(name: str, arch: str) -> tuple[str, int]:
    """(stack, layer index) of an attention module from its name (body.encoder.blocks.3.attn → encoder, 3)."""
    numbers = [int(part) for part in name.split(".") if part.isdigit()]
    layer = numbers[-1] if numbers else 0
    if arch == "encoder-decoder":
        return ("decoder" if re.search(r"(^|\.)decoder(\.|$)", name) else "encoder"), layer
    return ("encoder" if arch == "encoder" else "decoder"), layer


@torch.inference_mode()
def attention_maps(model: PolyformerModel, tokenizer, text: str, target: str | None = None) -> list[AttentionMap]:
    """Every attention module's weights on `text` (and `target` for encoder–decoders), in the order they ran."""
    model = model.eval()
    inputs, source, target_ids = _inputs(model, tokenizer, text, target)
    names = {id(module): name for name, module in model.named_modules()}
    with recording_attention(model) as records:
        model(**inputs)
    source_tokens = _display(tokenizer.convert_ids_to_tokens(source))
    target_tokens = _display(tokenizer.convert_ids_to_tokens(target_ids)) if target_ids else []
    maps = []
    for record in records:
        stack, layer = _where(names[id(record.module)], model.config.arch)
        weights = record.weights[0].float().cpu().numpy()  # (H, T, S)
        if record.module.cross:
            maps.append(AttentionMap(stack, "cross", layer, target_tokens, source_tokens, weights))
        elif stack == "encoder":
            maps.append(AttentionMap(stack, "bidirectional", layer, source_tokens, source_tokens, weights))
        else:
            tokens = target_tokens or source_tokens
            maps.append(AttentionMap(stack, "causal", layer, tokens, tokens, weights))
    return maps


def select(maps: list[AttentionMap], layer: int | None = None, head: int | None = None,
           kind: str | None = None) -> list[tuple[AttentionMap, int]]:
    """(map, head) panels to draw: the asked layer / head / kind; without a layer, the last layers that fit MAX_PANELS."""
    chosen = [m for m in maps if kind is None or m.kind == kind]
    if layer is not None:
        layers = sorted({m.layer for m in chosen})
        if layer not in layers:
            raise ConfigError(f"--layer {layer}: the model has layers {layers[0]}..{layers[-1]}" if layers else
                              "no attention of that kind in this model")
        chosen = [m for m in chosen if m.layer == layer]
    heads = chosen[0].weights.shape[0] if chosen else 0
    if head is not None and not 0 <= head < heads:
        raise ConfigError(f"--head {head}: the model has heads 0..{heads - 1}")
    panels = [(m, h) for m in chosen for h in ([head] if head is not None else range(m.weights.shape[0]))]
    if layer is None and len(panels) > MAX_PANELS:
        per_map = len(panels) // max(1, len(chosen))
        panels = panels[-(MAX_PANELS // per_map) * per_map:]
    return panels


def plot_maps(maps: list[AttentionMap], path: str | Path | None = None, layer: int | None = None,
              head: int | None = None, kind: str | None = None) -> bytes:
    """Heatmaps (rows: modules, columns: heads) with the tokens on the axes, as PNG bytes (written to `path` if given)."""
    from polyformer.compare.plots import heatmap_grid

    panels = select(maps, layer, head, kind)
    if not panels:
        raise ConfigError("nothing to draw: no attention map matches --layer / --head / --kind")
    png = heatmap_grid([(m.weights[h], m.query_tokens, m.key_tokens, f"{m.title} · head {h}") for m, h in panels],
                       columns=1 if head is not None else panels[0][0].weights.shape[0])
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(png)
    return png
