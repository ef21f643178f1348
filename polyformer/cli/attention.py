"""`polyformer attention`: attention weights per layer and head as heatmaps, tokens on the axes.

    polyformer attention --model all-MiniLM-L6-v2 --text "The cat sat on the mat." --layer 5 --out maps.png
    polyformer attention --model runs/mt --text "In the beginning" --target "En el principio" --kind cross --out cross.png

The weights come from the explicit attention path (polyformer.compare.attention); `--json` also
writes them (per map: stack, kind, layer, tokens, weights per head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def attention(
    model: str = typer.Option(..., "--model", help="Catalog name, model folder, run directory or GGUF file."),
    text: str = typer.Option(..., "--text", help="The text (for encoder-decoders: the source)."),
    target: Optional[str] = typer.Option(None, "--target", help="Encoder-decoders: the target whose cross-attention over "
                                         "the source is drawn (default: the text)."),
    layer: Optional[int] = typer.Option(None, "--layer", min=0, help="Only this layer (default: all, or the last ones that fit)."),
    head: Optional[int] = typer.Option(None, "--head", min=0, help="Only this head (default: every head)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only bidirectional | causal | cross maps."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the weights as JSON here."),
) -> None:
    """Draw a model's attention on a text as heatmaps (one per layer and head)."""
    import json

    from polyformer.compare.attention import MAP_KINDS, attention_maps, plot_maps
    from polyformer.errors import ConfigError
    from polyformer.tasks.models import load_pretrained

    if kind is not None and kind not in MAP_KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of {', '.join(MAP_KINDS)}")
    loaded, tokenizer, _ = load_pretrained(model)
    maps = attention_maps(loaded, tokenizer, text, target)
    plot_maps(maps, out, layer=layer, head=head, kind=kind)
    if json_out is not None:
        rows = [{"stack": m.stack, "kind": m.kind, "layer": m.layer, "query_tokens": m.query_tokens,
                 "key_tokens": m.key_tokens, "weights": m.weights.round(5).tolist()} for m in maps]
        json_out.write_text(json.dumps(rows) + "\n")
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    app.command("attention")(attention)
