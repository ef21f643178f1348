"""The served models and indexes: each loaded once, with the engines its capabilities need.

What a model can do follows from its form and head:

- every model embeds (`SentenceEncoder`: a sentence-transformers folder's own pooling, mean
  pooling for other encoders, last-token pooling for decoders) and reranks by embedding cosine;
- a decoder or encoder–decoder with an LM head generates (`/v1/completions`) through its own
  continuous-batching `GenerationEngine`, and chats when its tokenizer has a chat template;
- a fine-tuned sequence- or token-classification model classifies (`/v1/classify`, through the
  task recipes); a fine-tuned pair model also reranks as a cross-encoder.

A served index (`polyformer index` output) brings the encoder its meta.json records.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from polyformer.data.collators import pad_batch
from polyformer.embeddings.encoder import SentenceEncoder, embed
from polyformer.server.batching import DynamicBatcher
from polyformer.server.generation import GenerationEngine

if TYPE_CHECKING:
    from polyformer.server.metrics import Metrics
    from polyformer.server.settings import Served, ServerSettings

@dataclass
class ServedModel:
    name: str
    source: str
    encoder: SentenceEncoder
    embedder: DynamicBatcher
    pipe: Any = None  # TextGenerationPipeline for generative models
    engine: GenerationEngine | None = None
    task: Any = None  # the task recipe of a classification model (classify, pair, ner)
    task_tokenizer: Any = None
    classifier: DynamicBatcher | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def model(self):
        return self.encoder.model

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def context_length(self) -> int:
        return self.model.config.max_positions

    @property
    def chat(self) -> bool:
        return self.engine is not None and bool(getattr(self.tokenizer, "chat_template", None))

    def capabilities(self) -> list[str]:
        kinds = ["embeddings", "rerank", "tokenize"]
        if self.engine is not None:
            kinds.insert(0, "completions")
        if self.chat:
            kinds.insert(1, "chat")
        if self.task is not None:
            kinds.append("classify")
        return kinds

    def workers(self) -> list[Any]:
        return [w for w in (self.engine, self.embedder, self.classifier) if w is not None]


@dataclass
class ServedIndex:
    name: str
    directory: str
    index: Any  # VectorIndex
    encoder: SentenceEncoder
    embedder: DynamicBatcher
    lock: threading.Lock = field(default_factory=threading.Lock)

    def workers(self) -> list[Any]:
        return [self.embedder]


def load_encoder(source: str, settings: ServerSettings) -> SentenceEncoder:
    """A model and tokenizer as a `SentenceEncoder` sharing the one copy of the weights."""
    from polyformer.io.loader import load
    from polyformer.io.sentence_transformers import is_sentence_transformers_folder
    from polyformer.locations import resolve
    from polyformer.precision import prepare
    from polyformer.runtime import resolve_device
    from polyformer.tokenizers import load_tokenizer

    path = resolve(source)
    if path.is_dir() and is_sentence_transformers_folder(path):
        return SentenceEncoder.load(path, device=settings.device, dtype=settings.dtype)
    model = prepare(load(path, dtype="float32"), resolve_device(settings.device), settings.dtype)  # --dtype as given
    pooling = "last" if model.config.arch == "decoder" else "mean"
    return SentenceEncoder(model, load_tokenizer(path), pooling=pooling)


def embedding_batcher(name: str, encoder: SentenceEncoder, settings: ServerSettings, metrics: Metrics) -> DynamicBatcher:
    def run(rows: list[list[int]]) -> list[np.ndarray]:
        input_ids, mask = pad_batch(rows, encoder.pad_id, device=encoder.model.device)
        vectors = embed(encoder.model, input_ids, mask, encoder.pooling, normalize=True)  # (B, D)
        return list(vectors.float().cpu().numpy())

    return DynamicBatcher(name, "embed", run, settings.max_batch_tokens, metrics)


def _classification(served: ServedModel, settings: ServerSettings, metrics: Metrics) -> None:
    from polyformer.tasks.base import TaskOptions
    from polyformer.tasks.encoding import TaskTokenizer
    from polyformer.tasks.recipe import get_task, max_length_for

    config = served.model.config
    if config.head == "token-classification":
        task = get_task("ner")
    elif config.head == "sequence-classification":
        task = get_task("pair" if config.extra.get("task") == "pair" else "classify")
    else:
        return
    served.task = task
    served.task_tokenizer = TaskTokenizer(served.tokenizer, max_length_for(task, served.model, None))

    def run(items: list[Any]) -> list[dict[str, Any]]:
        return task.predict(served.model, served.task_tokenizer, items, TaskOptions(batch_size=len(items)))

    served.classifier = DynamicBatcher(served.name, "classify", run, settings.max_batch_tokens, metrics)


def load_model(spec: Served, settings: ServerSettings, metrics: Metrics) -> ServedModel:
    """Load one served model and build (not start) its engines."""
    from polyformer.generation.text_pipeline import TextGenerationPipeline

    encoder = load_encoder(spec.source, settings)
    served = ServedModel(spec.name, spec.source, encoder, embedding_batcher(spec.name, encoder, settings, metrics))
    config = encoder.model.config
    if config.head == "lm" and config.arch in ("decoder", "encoder-decoder"):
        served.pipe = TextGenerationPipeline(encoder.model, encoder.tokenizer)
        served.engine = GenerationEngine(spec.name, encoder.model, encoder.tokenizer, settings.max_concurrent, metrics)
    _classification(served, settings, metrics)
    return served


def load_index(spec: Served, settings: ServerSettings, metrics: Metrics) -> ServedIndex:
    from polyformer.embeddings.index import VectorIndex
    from polyformer.embeddings.semantic import open_encoder

    index = VectorIndex.open(spec.source)
    encoder = open_encoder(index, device=settings.device, dtype=settings.dtype)
    return ServedIndex(spec.name, spec.source, index, encoder,
                       embedding_batcher(f"index:{spec.name}", encoder, settings, metrics))
