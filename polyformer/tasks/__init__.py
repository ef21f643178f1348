"""Task recipes on top of the models: fill-mask (more tasks build on the trainer)."""

from polyformer.tasks.fill_mask import MaskPrediction, fill_mask

__all__ = ["MaskPrediction", "fill_mask"]
