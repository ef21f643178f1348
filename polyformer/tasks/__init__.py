"""Understanding tasks on any polyformer model: recipes, metrics, fine-tuning, evaluation, prediction.

    from polyformer.tasks import FinetuneSpec, finetune, evaluate, predict
    finetune(FinetuneSpec(task="classify", model="all-MiniLM-L6-v2", data="rotten_tomatoes", out="runs/rt"))
    evaluate("classify", "runs/rt", "rotten_tomatoes", split="test").metrics
    list(predict("classify", "runs/rt", ["A gripping thriller."]))

Recipes: `classify` (classify.py), `pair` (pair.py), `ner` (ner.py), `qa` (qa.py); zero-/few-shot
classification by prompting decoders (prompting.py); fill-mask (fill_mask.py). The heads and
loading live in models.py, the trainer's data source in batches.py, tokenisation in encoding.py.
"""

from polyformer.tasks.base import Evaluation, TaskOptions
from polyformer.tasks.fill_mask import MaskPrediction, fill_mask
from polyformer.tasks.recipe import TASK_NAMES, FinetuneResult, FinetuneSpec, evaluate, finetune, get_task, predict

__all__ = [
    "TASK_NAMES",
    "Evaluation",
    "FinetuneResult",
    "FinetuneSpec",
    "MaskPrediction",
    "TaskOptions",
    "evaluate",
    "fill_mask",
    "finetune",
    "get_task",
    "predict",
]
