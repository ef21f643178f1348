"""Zero- and few-shot classification by prompting a decoder: score each label's continuation.

No head is trained. A prompt is an instruction, K labelled demonstrations and the text to
classify, each written with a template:

    Each movie review below is labelled positive or negative.

    Review: A three-hour cinema master class.
    Sentiment: positive

    Review: <the text>
    Sentiment:

and a label's score is the log-probability the LM head gives its verbalizer (" positive",
" negative") as the continuation, summed over the verbalizer's tokens; the prediction is the
label with the highest score. The text's part of the prompt starts
with the blank line that separates it from the prefix. Demonstrations come from the train split, balanced over labels
(round-robin over the labels in sorted order, each label's examples in a seeded random order),
then shuffled with the same seed.

Small models lean towards one label whatever the text. Contextual calibration (Zhao et al.
2021, "Calibrate before use") divides that lean out: the label distribution the prompt gives
content-free texts ("N/A", "", "[MASK]"), averaged, is the prior p_cf, and a text's calibrated
score is log p(label | text) - log p_cf(label) with p(label | text) normalised over the labels.
`evaluate` reports both (the `calibrated_` / `uncalibrated_` metrics are the other mode);
`calibrate=True` makes calibrated scores the predictions.

The shared prefix (instruction + demonstrations) is run through the model once; its key/value
cache is copied to every batch, so K shots cost little more than zero shots. When every
verbalizer is a single token, one forward per text scores all labels at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyformer.core import KVCache
from polyformer.data.collators import pad_batch
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel
from polyformer.tasks.base import Evaluation, report_truncation
from polyformer.tasks.datasets import check_labels
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.tasks.metrics import classification_scores, confusion_matrix

if TYPE_CHECKING:
    from polyformer.tasks.classify import TextExample

DEFAULT_TEMPLATE = "Text: {text}\nLabel:"
CONTENT_FREE = ("N/A", "", "[MASK]")
SEPARATOR = "\n\n"
BUILTIN_PROMPTS = {
    "rotten_tomatoes": {
        "instruction": "Each movie review below is labelled positive or negative.",
        "template": "Review: {text}\nSentiment:",
        "verbalizers": {"fresh": "positive", "rotten": "negative"},
    },
}


@dataclass(frozen=True)
class PromptSettings:
    """What a user asks of a prompt; `prompt_spec` turns it into the PromptSpec for a dataset."""

    shots: int = 0  # demonstrations from the train split (0 = zero-shot)
    verbalizers: dict[str, str] | None = None  # label → words, over the built-in ones (default: the label itself)
    template: str | None = None  # how one example reads, with {text} (default: the dataset's, else DEFAULT_TEMPLATE)
    instruction: str | None = None  # text before the examples (default: the dataset's, else none)
    seed: int = 0  # choice and order of the demonstrations
    calibrate: bool = False  # predict with contextual calibration


@dataclass
class PromptSpec:
    """How the prompt reads: labels and their verbalizers, the template, instruction and shots."""

    verbalizers: dict[str, str]  # label → the words scored as its continuation
    template: str = DEFAULT_TEMPLATE
    instruction: str = ""
    shots: list[TextExample] = field(default_factory=list)
    max_text_tokens: int = 256  # longer texts are cut (and counted)
    calibrate: bool = False  # predict with contextual calibration (see `calibrated`)

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise ConfigError(f"template {self.template!r} has no {{text}} placeholder")
        if len(self.verbalizers) < 2:
            raise ConfigError(f"prompting needs two or more labels, got {sorted(self.verbalizers)}")

    @property
    def labels(self) -> list[str]:
        return sorted(self.verbalizers)

    def render(self, text: str) -> str:
        return self.template.replace("{text}", text)

    def prefix(self) -> str:
        """Instruction and demonstrations separated by blank lines (the text's part starts with the separator).

        Cutting before the separator keeps the tokens of prefix + text equal to those of the
        whole prompt for byte-level BPE, which merges a blank line with what follows.
        """
        parts = [self.instruction] if self.instruction else []
        parts += [f"{self.render(shot.text)} {self.verbalizers[shot.label]}" for shot in self.shots]  # type: ignore[index]
        return SEPARATOR.join(parts)

    def query(self, text: str) -> str:
        """The part of the prompt after the shared prefix."""
        return (SEPARATOR if self.instruction or self.shots else "") + self.render(text)


def choose_shots(examples: Sequence[TextExample], count: int, seed: int = 0) -> list[TextExample]:
    """`count` demonstrations balanced over labels (see the module docstring)."""
    if count < 0:
        raise ConfigError(f"shots must be >= 0, got {count}")
    if count == 0:
        return []
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[TextExample]] = {}
    for example in examples:
        by_label.setdefault(example.label or "", []).append(example)
    queues = {label: [items[i] for i in rng.permutation(len(items))] for label, items in sorted(by_label.items())}
    chosen: list[TextExample] = []
    while len(chosen) < count and any(queues.values()):
        for label in sorted(queues):
            if queues[label] and len(chosen) < count:
                chosen.append(queues[label].pop(0))
    return [chosen[i] for i in rng.permutation(len(chosen))]


def prompt_spec(data: str | None, train: Sequence[TextExample] | None,
                settings: PromptSettings = PromptSettings()) -> PromptSpec:
    """The prompt for a dataset: built-in defaults, labels from the train split, the settings on top."""
    shots, verbalizers, template, instruction = settings.shots, settings.verbalizers, settings.template, settings.instruction
    defaults = BUILTIN_PROMPTS.get(data or "", {})
    labels = sorted({e.label for e in train or [] if e.label is not None})
    words = dict(defaults.get("verbalizers", {}) if not verbalizers else {})
    words = {label: words.get(label, label) for label in labels} if labels else words
    words.update(verbalizers or {})
    if labels:
        unknown = sorted(set(words) - set(labels))
        if unknown:
            raise ConfigError(f"--verbalizer names label(s) {unknown} that the data does not have ({labels})")
    if shots and not train:
        raise ConfigError("few-shot prompting needs labelled data for the demonstrations: pass --data")
    return PromptSpec(
        verbalizers=words,
        template=template or defaults.get("template", DEFAULT_TEMPLATE),  # type: ignore[arg-type]
        instruction=instruction if instruction is not None else defaults.get("instruction", ""),  # type: ignore[arg-type]
        shots=choose_shots(train or [], shots, settings.seed),
        calibrate=settings.calibrate,
    )


class PromptClassifier:
    """Label log-probabilities of texts under a decoder's LM head."""

    def __init__(self, model: PolyformerModel, encoder: TaskTokenizer, spec: PromptSpec) -> None:
        if model.config.arch != "decoder" or model.config.head != "lm":
            raise ConfigError(f"prompting needs a decoder with an LM head; this model is arch={model.config.arch!r}, "
                              f"head={model.config.head!r} (fine-tune it instead: polyformer finetune --task classify)")
        self.model, self.encoder, self.spec = model.eval(), encoder, spec
        tokenizer = encoder.tokenizer
        self.continuations = [tokenizer.encode(" " + spec.verbalizers[label], add_special_tokens=False) for label in spec.labels]
        if any(not ids for ids in self.continuations):
            raise ConfigError("every verbalizer must have at least one token")
        prefix = spec.prefix()
        self.prefix_ids = tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
        self._prefix_cache = self._run_prefix()
        self.last_truncated = 0
        self._prior: torch.Tensor | None = None

    @torch.inference_mode()
    def _run_prefix(self) -> KVCache | None:
        if not self.prefix_ids:
            return None
        cache = KVCache()
        self.model.hidden_states(torch.tensor([self.prefix_ids], device=self.model.device), cache=cache)
        return cache

    def _rows(self, texts: Sequence[str]) -> list[tuple[int, int | None, list[int]]]:
        """(text index, label index or None for all labels, token ids) per forward row."""
        single = all(len(ids) == 1 for ids in self.continuations)
        rows: list[tuple[int, int | None, list[int]]] = []
        self.last_truncated = 0
        for index, text in enumerate(texts):
            clipped, cut = self.encoder.clip(text, self.spec.max_text_tokens)
            self.last_truncated += cut
            ids = self.encoder.tokenizer.encode(self.spec.query(clipped), add_special_tokens=not self.prefix_ids)
            if single:
                rows.append((index, None, ids))
            else:
                rows.extend((index, label, ids + cont[:-1]) for label, cont in enumerate(self.continuations))
        return rows

    def label_prior(self) -> torch.Tensor:
        """(labels,) the mean label distribution of the content-free texts (computed once)."""
        if self._prior is None:
            self._prior = self.log_probs(list(CONTENT_FREE)).softmax(-1).mean(0)
        return self._prior

    def calibrated(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(N, labels) log p(label | text), normalised over the labels, minus log p_cf(label)."""
        return log_probs.log_softmax(-1) - self.label_prior().log()

    def scores(self, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """(N, labels) the scores predictions take the best of: calibrated when the spec says so."""
        log_probs = self.log_probs(texts, batch_size)
        return self.calibrated(log_probs) if self.spec.calibrate else log_probs

    @torch.inference_mode()
    def log_probs(self, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """(N, labels) summed log-probabilities of each label's continuation."""
        out = torch.zeros(len(texts), len(self.continuations))
        rows = self._rows(texts)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][2]))
        for start in range(0, len(order), batch_size):
            chosen = [rows[i] for i in order[start: start + batch_size]]
            hidden = self._hidden([ids for _, _, ids in chosen])  # (B, T, D)
            for row, (index, label, ids) in enumerate(chosen):
                if label is None:  # every label's single token, read at the last position
                    last = self._log_probs(hidden[row, len(ids) - 1: len(ids)])[0]  # (V,)
                    out[index] = last[[cont[0] for cont in self.continuations]].cpu()
                else:
                    cont = self.continuations[label]
                    log_probs = self._log_probs(hidden[row, len(ids) - len(cont): len(ids)])  # (len(cont), V)
                    out[index, label] = log_probs[torch.arange(len(cont)), torch.tensor(cont)].sum().cpu()
        report_truncation(self.last_truncated, len(texts), self.spec.max_text_tokens, "texts (prompt)")
        return out

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(P, D) hidden states → (P, V) next-token log-probabilities."""
        return self.model.head(hidden).float().log_softmax(-1)

    def _hidden(self, rows: list[list[int]]) -> torch.Tensor:
        """(B, T, D) last hidden states of right-padded rows after the cached prefix."""
        device = self.model.device
        ids, mask = pad_batch(rows, self.encoder.pad_id, device=device)
        mask = torch.cat([mask.new_ones(len(rows), len(self.prefix_ids)), mask], dim=1)  # (B, prefix + T)
        cache = None
        if self._prefix_cache is not None:
            cache = copy.deepcopy(self._prefix_cache)
            cache.reorder(torch.zeros(len(rows), dtype=torch.long, device=device))  # the prefix for every row
        return self.model.hidden_states(ids, attention_mask=mask, cache=cache)

    # ---- task results ---------------------------------------------------------------------------
    def evaluate(self, examples: Sequence[TextExample], batch_size: int = 16) -> Evaluation:
        """Metrics of the spec's mode, plus accuracy and macro-F1 of the other (calibrated or not)."""
        labels = self.spec.labels
        check_labels([(e.where, e.label or "") for e in examples], labels, "the prompt")
        raw = self.log_probs([e.text for e in examples], batch_size)
        truncated = self.last_truncated
        modes = {"uncalibrated": raw, "calibrated": self.calibrated(raw)}
        main = "calibrated" if self.spec.calibrate else "uncalibrated"
        index = {label: i for i, label in enumerate(labels)}
        gold = [index[e.label] for e in examples]  # type: ignore[index]
        predicted = {mode: scores.argmax(-1).tolist() for mode, scores in modes.items()}
        metrics = classification_scores(gold, predicted[main], labels)
        other = next(mode for mode in modes if mode != main)
        extra = classification_scores(gold, predicted[other], labels)
        details = {"confusion_matrix": confusion_matrix(gold, predicted[main], len(labels)).tolist(), "labels": labels,
                   "label_prior": dict(zip(labels, self.label_prior().tolist())), "prompt_prefix": self.spec.prefix(),
                   "template": self.spec.template, "verbalizers": self.spec.verbalizers}
        return Evaluation({**metrics, f"{other}_accuracy": extra["accuracy"], f"{other}_macro_f1": extra["macro_f1"],
                           "calibrated": float(self.spec.calibrate), "examples": len(examples),
                           "shots": len(self.spec.shots), "truncated": truncated}, details)

    def predict(self, inputs: Sequence[TextExample], batch_size: int = 16) -> list[dict]:
        scores = self.scores([e.text for e in inputs], batch_size)
        labels = self.spec.labels
        rows = []
        for example, row in zip(inputs, scores.softmax(-1).tolist()):
            best = max(range(len(labels)), key=row.__getitem__)
            rows.append({"text": example.text, "label": labels[best], "score": row[best], "scores": dict(zip(labels, row))})
        return rows


# ---- recipe level: load, build the prompt, run ----------------------------------------------------
def prompted_classifier(model, data: str | None, options, settings: PromptSettings = PromptSettings(),
                        tokenizer=None) -> PromptClassifier:
    """A PromptClassifier for a model spec (or object + tokenizer), labels and shots from `data`'s train split."""
    from polyformer.tasks.classify import CLASSIFY
    from polyformer.tasks.models import load_pretrained
    from polyformer.tasks.recipe import inference_device

    if isinstance(model, PolyformerModel):
        if tokenizer is None:
            raise ConfigError("pass the tokenizer with a model object (tokenizer=pf.load_tokenizer(path))")
        loaded = model
    else:
        loaded, tokenizer, _ = load_pretrained(model)
    if data is None and not settings.verbalizers:
        raise ConfigError("prompting needs the labels: pass --data (its train split gives them) or --verbalizer LABEL=WORDS")
    train = CLASSIFY.load(data, "train", options) if data is not None else None
    spec = prompt_spec(data, train, settings)
    loaded = loaded.to(inference_device(options.device))
    return PromptClassifier(loaded, TaskTokenizer(tokenizer, options.max_length or 512), spec)


def evaluate_prompted(model, data: str, split: str | None, options,
                      settings: PromptSettings = PromptSettings()) -> Evaluation:
    """Zero-/few-shot metrics on a split (as `evaluate`; the demonstrations are never scored)."""
    from polyformer.tasks.classify import CLASSIFY
    from polyformer.tasks.recipe import default_split

    classifier = prompted_classifier(model, data, options, settings)
    shown = {shot.where for shot in classifier.spec.shots}
    examples = [e for e in CLASSIFY.load(data, split or default_split(CLASSIFY, data), options) if e.where not in shown]
    return classifier.evaluate(examples, options.batch_size)
