"""Metrics of the understanding tasks, computed the way their reference tools compute them.

- classification: accuracy, macro-F1 (the unweighted mean of per-label F1, scikit-learn's
  definition: a label never predicted and never true is left out), the confusion matrix and its
  PNG (matplotlib);
- NER: entity-level precision / recall / F1 and the per-type report from `seqeval` (default
  CoNLL-style matching: an entity counts only when its type and both boundaries are right);
- similarity regression: Pearson and Spearman correlation (`scipy.stats`);
- extractive QA: exact match and token F1 after SQuAD v1.1's answer normalisation (lower case,
  no punctuation, no articles a/an/the, single spaces), maximised over the reference answers;
- translation and text to text: corpus-level BLEU and chrF from `sacrebleu` on detokenized
  outputs (its default 13a tokenization, one reference per output), with the signature strings
  that make a score reproducible.

All scores are fractions in [0, 1] (SQuAD's own script prints them multiplied by 100), except
BLEU and chrF, which keep sacreBLEU's 0–100 scale so they compare with published figures.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polyformer.errors import ConfigError, DataError


# ---- classification ---------------------------------------------------------------------------
def confusion_matrix(gold: Sequence[int], predicted: Sequence[int], num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts; row = true label, column = predicted label."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def classification_scores(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict[str, float]:
    """accuracy, macro_f1 and per-label F1 (`f1_<label>`) of label indices."""
    if len(gold) != len(predicted) or not gold:
        raise DataError(f"need the same non-zero number of gold and predicted labels, got {len(gold)} and {len(predicted)}")
    matrix = confusion_matrix(gold, predicted, len(labels))
    true_positive = np.diag(matrix).astype(np.float64)
    support, chosen = matrix.sum(axis=1), matrix.sum(axis=0)
    f1 = np.divide(2 * true_positive, support + chosen, out=np.zeros_like(true_positive), where=(support + chosen) > 0)
    present = (support + chosen) > 0
    scores = {"accuracy": float(true_positive.sum() / matrix.sum()), "macro_f1": float(f1[present].mean())}
    scores.update({f"f1_{label}": float(value) for label, value in zip(labels, f1)})
    return scores


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write the confusion matrix as a PNG heat map with the counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            colour = "white" if matrix[row, column] > threshold else "black"
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour)
    axes.set_title(title or f"confusion matrix (n={int(matrix.sum())})")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ---- NER --------------------------------------------------------------------------------------
def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(entity precision / recall / F1 / token accuracy, per-type report) from seqeval."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    gold, predicted = [list(tags) for tags in gold], [list(tags) for tags in predicted]
    if [len(tags) for tags in gold] != [len(tags) for tags in predicted]:
        raise DataError("gold and predicted tag sequences differ in length")
    scores = {
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "token_accuracy": float(accuracy_score(gold, predicted)),
    }
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {
        name: {key: float(value) for key, value in row.items()}
        for name, row in report.items() if not name.endswith(" avg")
    }
    return scores, per_type


def format_entity_report(per_type: dict[str, dict[str, float]]) -> str:
    """The per-type report as a markdown table (type, precision, recall, F1, support)."""
    lines = ["| type | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name in sorted(per_type):
        row = per_type[name]
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {int(row['support'])} |")
    return "\n".join(lines)


# ---- regression -------------------------------------------------------------------------------
def correlation_scores(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation (and the mean squared error) of two score lists."""
    from scipy.stats import pearsonr, spearmanr

    gold_array, predicted_array = np.asarray(gold, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if gold_array.shape != predicted_array.shape or gold_array.size < 2:
        raise DataError(f"correlations need two score lists of the same length >= 2, got {gold_array.size} and {predicted_array.size}")
    constant = np.ptp(gold_array) == 0 or np.ptp(predicted_array) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(gold_array, predicted_array).statistic),
        "spearman": 0.0 if constant else float(spearmanr(gold_array, predicted_array).statistic),
        "mse": float(np.mean((gold_array - predicted_array) ** 2)),
    }


# ---- SQuAD ------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, drop punctuation and articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1, each the best over a question's reference answers."""
    if len(predictions) != len(references) or not predictions:
        raise DataError(f"need one prediction per question, got {len(predictions)} for {len(references)}")
    em = [max(exact_match(p, truth) for truth in truths) for p, truths in zip(predictions, references)]
    f1 = [max(token_f1(p, truth) for truth in truths) for p, truths in zip(predictions, references)]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}


# ---- translation ------------------------------------------------------------------------------
def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus BLEU and chrF (sacreBLEU, 0–100) with BLEU's brevity penalty and length ratio; and the signatures."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise DataError(f"need the same non-zero number of outputs and references, got {len(hypotheses)} and {len(references)}")
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise ConfigError("translation metrics need the sacrebleu package: pip install sacrebleu") from None
    bleu, chrf = BLEU(), CHRF()
    outputs, refs = list(hypotheses), [list(references)]
    scored = bleu.corpus_score(outputs, refs)
    metrics = {"bleu": scored.score, "chrf": chrf.corpus_score(outputs, refs).score, "bleu_bp": scored.bp,
               "length_ratio": scored.sys_len / max(1, scored.ref_len)}
    return metrics, {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}
