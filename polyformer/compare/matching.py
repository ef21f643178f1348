"""The three from-scratch models of a comparison: one block design, sized so the comparison is fair.

Every model uses the same block (pre-norm LayerNorm, learned positions, GELU, biases) at the same
width and head count; they differ in the stacks (`arch`) and in how the layers are shared out.
Two rules, stated in every report (`--match`):

- `params` (default): the same number of non-embedding parameters. The encoder and the decoder
  have L layers; the encoder–decoder splits them, ⌈L/2⌉ encoder + ⌊L/2⌋ decoder layers, and its
  MLP width is solved so that its parameters (cross-attention included) equal theirs. Each of its
  tokens then passes through about half as many layers: about half the FLOPs per token.
- `flops`: the same FLOPs per token (T5's normalisation, Raffel et al. 2020, section 3.2.2). The
  encoder–decoder has L + L layers of the same width: each source token passes through the L
  encoder layers and each target token through the L decoder layers, as each token of an
  L-layer decoder does, so the cost per (source, target) pair is about the same while the
  parameters are about twice as many.

Non-embedding parameters are those of the stacks (blocks and final norms): token, position and
segment embeddings and the heads (tied LM projection, MLM transform, pooler, NSP) are left out, as
in Kaplan et al. 2020. FLOPs per training token follow the same paper: forward 2·N + 2·L·n_ctx·d
(+ 2·d·V for the output projection at every predicted position), backward twice the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from polyformer.config import ModelConfig
from polyformer.errors import ConfigError

MATCHES = ("params", "flops")
TOLERANCE = 0.05  # largest relative difference of non-embedding parameters under --match params
WIDTH_MULTIPLE = 8  # a solved MLP width is rounded to this


@dataclass(frozen=True)
class Size:
    """Width, heads, layers and MLP width shared by the three models."""

    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int


SIZES: dict[str, Size] = {
    "micro": Size(32, 2, 2, 128),  # smoke runs and tests
    "tiny": Size(128, 4, 4, 512),
    "mini": Size(256, 4, 4, 1024),
    "small": Size(384, 6, 6, 1536),
    "base": Size(768, 12, 12, 3072),
}

BLOCK = dict(norm="layernorm", norm_placement="pre", final_norm=True, embedding_norm=False, position="learned",
             activation="gelu", attention_bias=True, mlp_bias=True, tie_word_embeddings=True, dropout=0.0,
             attention_dropout=0.0)


@dataclass(frozen=True)
class Layout:
    """One model's layer counts and MLP width (the rest is the shared `Size`)."""

    arch: str
    num_layers: int
    num_decoder_layers: int | None
    intermediate_size: int

    def overrides(self, size: Size) -> dict[str, object]:
        """ModelConfig fields of this layout (what `polyformer pretrain --set` would give)."""
        fields: dict[str, object] = {**BLOCK, "hidden_size": size.hidden_size, "num_heads": size.num_heads,
                                     "num_layers": self.num_layers, "intermediate_size": self.intermediate_size}
        if self.num_decoder_layers is not None:
            fields["num_decoder_layers"] = self.num_decoder_layers
        if self.arch == "encoder":
            fields["type_vocab_size"] = 2  # NSP's two segments
        return fields


def size_named(name: str) -> Size:
    if name not in SIZES:
        raise ConfigError(f"--size {name!r} is not one of {', '.join(SIZES)}")
    return SIZES[name]


def stack_parameters(config: ModelConfig) -> dict[str, int]:
    """Non-embedding parameters per stack ("stack", or "encoder" and "decoder"), counted on the meta device."""
    from polyformer.models import PolyformerModel

    with torch.device("meta"):
        model = PolyformerModel(config)
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        if name.startswith("body.") and not name.startswith("body.embeddings."):
            stack = name.split(".")[1]
            counts[stack] = counts.get(stack, 0) + parameter.numel()
    return counts


def non_embedding_parameters(config: ModelConfig) -> int:
    """Parameters of the stacks: blocks and final norms (no embeddings, no heads)."""
    return sum(stack_parameters(config).values())


def sized(layout: Layout, size: Size, vocab_size: int = 1000) -> ModelConfig:
    """A config of the layout (vocabulary and heads do not change the non-embedding count)."""
    fields = {**layout.overrides(size), "arch": layout.arch, "vocab_size": vocab_size, "head": "none"}
    if layout.arch == "encoder-decoder":
        fields["decoder_start_token_id"] = 0
    return ModelConfig(**fields)  # type: ignore[arg-type]


def match_layouts(size: Size, match: str) -> dict[str, Layout]:
    """The encoder's, decoder's and encoder–decoder's layouts under a matching rule (module docstring)."""
    if match not in MATCHES:
        raise ConfigError(f"--match {match!r} is not one of {', '.join(MATCHES)}")
    layers, width = size.num_layers, size.intermediate_size
    layouts = {arch: Layout(arch, layers, None, width) for arch in ("encoder", "decoder")}
    if match == "flops":
        layouts["encoder-decoder"] = Layout("encoder-decoder", layers, layers, width)
        return layouts
    if layers < 2:
        raise ConfigError("--match params splits the layers between encoder and decoder: the size needs at least 2")
    encoder_layers = (layers + 1) // 2
    target = non_embedding_parameters(sized(layouts["decoder"], size))
    layouts["encoder-decoder"] = _solve_width(size, encoder_layers, layers - encoder_layers, target)
    return layouts


def _solve_width(size: Size, encoder_layers: int, decoder_layers: int, target: int) -> Layout:
    """The encoder–decoder layout whose MLP width brings its parameters closest to `target`.

    Parameters are affine in the MLP width, so two counts give the line and one solve the width.
    """
    def count(width: int) -> int:
        return non_embedding_parameters(sized(Layout("encoder-decoder", encoder_layers, decoder_layers, width), size))

    low, high = WIDTH_MULTIPLE, size.intermediate_size
    slope = (count(high) - count(low)) / (high - low)
    exact = low + (target - count(low)) / slope
    width = max(WIDTH_MULTIPLE, int(round(exact / WIDTH_MULTIPLE)) * WIDTH_MULTIPLE)
    return Layout("encoder-decoder", encoder_layers, decoder_layers, width)


def relative_gap(counts: dict[str, int]) -> float:
    """(largest - smallest) / smallest of the models' non-embedding parameters."""
    values = list(counts.values())
    return (max(values) - min(values)) / min(values)


def check_matched(counts: dict[str, int], match: str) -> None:
    """Under `params`, the counts must agree within TOLERANCE."""
    if match == "params" and relative_gap(counts) > TOLERANCE:
        shown = ", ".join(f"{arch} {count:,}" for arch, count in counts.items())
        raise ConfigError(f"non-embedding parameters differ by more than {TOLERANCE:.0%} ({shown}); choose another --size")


def flops_per_token(config: ModelConfig, context: int, source_share: float = 0.5) -> float:
    """Training FLOPs per token (forward + backward = 3 × forward), Kaplan et al. 2020's approximation.

    `context` is the tokens each position attends over (the block size; for encoder–decoders the
    source and the target length). Encoder–decoders average over their tokens, `source_share` of
    them source tokens (the encoder) and the rest target tokens (the decoder's self- and
    cross-attention and the output projection).
    """
    d, vocab = config.hidden_size, config.vocab_size
    counts = stack_parameters(config)
    if config.arch != "encoder-decoder":
        return 3.0 * (2 * sum(counts.values()) + 2 * config.num_layers * context * d + 2 * d * vocab)
    source = 2 * counts["encoder"] + 2 * config.num_layers * context * d
    target = 2 * counts["decoder"] + 2 * config.decoder_layers * 2 * context * d + 2 * d * vocab
    return 3.0 * (source_share * source + (1 - source_share) * target)
