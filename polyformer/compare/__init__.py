"""The comparison of the three forms: `polyformer compare` and `polyformer attention`.

- spec.py: what a comparison runs (`CompareSpec`); matching.py: matched sizes, parameters, FLOPs;
- scratch.py: the shared tokenizer and the three pretraining runs; tasks.py, embedding.py,
  perplexity.py: the suite, one recipe per task through polyformer's own entry points;
- runs.py: one resumable run directory per (model, task, seed); suite.py: the driver;
- results.py + compare.schema.json: compare.json; report.py + plots.py: tables and report.html;
- attention.py: attention maps from the explicit attention path, and their heatmaps.
"""

from polyformer.compare.attention import AttentionMap, attention_maps, plot_maps
from polyformer.compare.spec import CompareSpec
from polyformer.compare.suite import run_compare

__all__ = ["AttentionMap", "CompareSpec", "attention_maps", "plot_maps", "run_compare"]
