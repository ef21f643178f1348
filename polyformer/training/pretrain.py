"""Pretraining: a `PretrainSpec` (YAML or CLI) → tokenizer, shards, model, trainer — from scratch or from real weights.

The three forms of the Transformer, trained the way the source material describes:

- encoder (BERT): masked-language modelling, with next-sentence prediction unless `nsp: false`;
- decoder (GPT): next-token prediction on packed blocks (optionally document-aware);
- encoder-decoder: sequence-to-sequence with label smoothing, on (text_a, text_b) pairs from
  jsonl/csv files, or on (line, next line) pairs of a plain corpus such as `shakespeare`.

With `init` (a catalog name, checkpoint folder or GGUF file), pretraining continues from those
weights with the checkpoint's own tokenizer, in its form: causal LM for a decoder (SmolLM2,
GPT-2), MLM (+ NSP with `nsp`) for an encoder (MiniLM gets a fresh MLM head), seq2seq for an
encoder–decoder; `model` overrides may change only what keeps the weights' shapes (dropout).

The run directory holds `pretrain.yaml` (this spec), `tokenizer/`, the trainer's files
(run.yaml, metrics.csv, checkpoints/, plot.png) and, at the end, `model/` — a native folder with
the tokenizer beside the weights, so `pf.load(run/model)` and `pf.load_tokenizer(run/model)` work.
`run` seeds every generator from `train.seed` before building anything, so the same spec gives
the same run in a new process; `resume(run_dir)` rebuilds everything from `pretrain.yaml` and
continues bit-exactly, logging what an uninterrupted run logs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyformer.config import ModelConfig, dataclass_from_dict, dataclass_from_yaml, preset
from polyformer.data.collators import MLMTokens
from polyformer.data.corpus import read_documents, read_pairs
from polyformer.data.shards import build_shard
from polyformer.data.sources import CausalLMSource, MLMSource, Seq2SeqSource
from polyformer.errors import ConfigError, DataError, PolyformerError
from polyformer.runtime import write_atomic
from polyformer.tokenizers import CharTokenizer, Tokenizer, load_tokenizer, train_bpe, train_wordpiece
from polyformer.training import distributed as dist
from polyformer.training.checkpoint import seed_everything
from polyformer.training.objectives import CausalLM, MaskedLM, Seq2SeqLM
from polyformer.training.trainer import TrainConfig, Trainer

SPEC_FILE = "pretrain.yaml"
DEFAULT_PRESETS = {"encoder": "bert-tiny", "decoder": "gpt-tiny", "encoder-decoder": "transformer-small"}
DEFAULT_TOKENIZERS = {"encoder": "wordpiece", "decoder": "bpe", "encoder-decoder": "bpe"}
TRAINED_KINDS = ("char", "bpe", "wordpiece")


@dataclass
class PretrainSpec:
    """What to pretrain on what; every field is also a CLI option of `polyformer pretrain`."""

    arch: str | None = None  # default: decoder; with init, the checkpoint's form
    init: str | None = None  # continue from these weights (catalog name, folder, GGUF) instead of random ones
    preset: str | None = None  # default: bert-tiny / gpt-tiny / transformer-small by arch
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    data: list[str] = field(default_factory=lambda: ["shakespeare"])
    text_field: str = "text"
    tokenizer: str | None = None  # char | bpe | wordpiece (trained on the train split) or a path
    vocab_size: int = 8000
    block_size: int = 128
    batch_size: int = 16
    nsp: bool = True  # encoders: add next-sentence prediction to MLM
    whole_word: bool = False  # encoders: whole-word masking
    document_aware: bool = False  # decoders: attention stays inside each packed document
    label_smoothing: float = 0.1  # encoder-decoders
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields

    def __post_init__(self) -> None:
        if self.arch is None and self.init is None:
            self.arch = "decoder"
        if self.arch is not None and self.arch not in DEFAULT_PRESETS:
            raise ConfigError(f"arch={self.arch!r} is not one of {', '.join(DEFAULT_PRESETS)}")
        if isinstance(self.data, str):
            self.data = [self.data]
        if not self.data:
            raise ConfigError("data: give a catalog name or one or more files")
        for name in ("vocab_size", "block_size", "batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def corpus(self) -> str | list[str]:
        """The data as the corpus readers take it: one catalog name / file, or a list of files."""
        return self.data[0] if len(self.data) == 1 else list(self.data)

    @property
    def preset_name(self) -> str:
        return self.preset or DEFAULT_PRESETS[self.arch]

    @property
    def tokenizer_kind(self) -> str:
        return self.tokenizer or self.init or DEFAULT_TOKENIZERS[self.arch]

    def train_config(self, out_dir: Path) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "out_dir": str(out_dir)}, source=SPEC_FILE)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "PretrainSpec":
        return dataclass_from_dict(cls, data, source)


# ---- building blocks --------------------------------------------------------------------------
def build_tokenizer(spec: PretrainSpec) -> Tokenizer | CharTokenizer:
    """Train the requested vocabulary on the train split, or load an existing tokenizer."""
    kind = spec.tokenizer_kind
    if kind not in TRAINED_KINDS:
        return load_tokenizer(kind)
    documents = read_documents(spec.corpus, "train", spec.text_field)
    if kind == "char":
        return CharTokenizer.train(documents)
    if kind == "wordpiece":
        return train_wordpiece(documents, spec.vocab_size, model_max_length=spec.block_size)
    return train_bpe(documents, spec.vocab_size)


def model_config(spec: PretrainSpec, tokenizer: Tokenizer | CharTokenizer) -> ModelConfig:
    """The preset, sized to the tokenizer and block, with the objective's head and the overrides."""
    head = "lm"
    if spec.arch == "encoder":
        head = "pretraining" if spec.nsp else "mlm"
    pooler = spec.arch == "encoder" and (spec.nsp or preset(spec.preset_name).pooler)
    return sized_config(spec.preset_name, spec.arch, tokenizer, spec.block_size, spec.model, head, pooler)


def sized_config(preset_name: str, arch: str, tokenizer: Tokenizer | CharTokenizer, context: int,
                 overrides: dict[str, Any], head: str = "lm", pooler: bool = False) -> ModelConfig:
    """A preset as a fresh model for `tokenizer`: its vocabulary and special ids, `context` positions, `head`."""
    base = preset(preset_name)
    fields: dict[str, Any] = {
        "arch": arch,
        "vocab_size": tokenizer.vocab_size,
        "max_positions": max(base.max_positions, context + 1),
        "head": head,
        "pooler": pooler,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if arch == "encoder-decoder":
        fields["decoder_start_token_id"] = _decoder_start(tokenizer)
    try:
        return base.replace(**{**fields, **overrides})
    except TypeError as err:
        raise ConfigError(f"model: {err}") from None


def _decoder_start(tokenizer: Tokenizer | CharTokenizer) -> int:
    for name in ("bos_token_id", "cls_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return value
    raise DataError("an encoder-decoder needs a tokenizer with a BOS, CLS, EOS or PAD token to start decoding")


def line_pairs(documents) -> list[tuple[str, str]]:
    """(line, next line) pairs of every document: a seq2seq task on any plain corpus."""
    pairs: list[tuple[str, str]] = []
    for document in documents:
        lines = [line.strip() for line in document.splitlines() if line.strip()]
        pairs.extend(zip(lines, lines[1:]))
    return pairs


def _pairs(spec: PretrainSpec, split: str) -> list[tuple[str, str]]:
    files = [item for item in spec.data if Path(item).suffix in (".jsonl", ".csv")]
    if files and len(files) == len(spec.data):
        return list(read_pairs(spec.corpus, split))
    return line_pairs(read_documents(spec.corpus, split, spec.text_field))


def build_source(spec: PretrainSpec, tokenizer: Tokenizer | CharTokenizer, cache_dir: Path | None, seed: int):
    """The batch source of the objective, with validation data from the held-out split."""
    if spec.arch == "encoder-decoder":
        return Seq2SeqSource(
            _pairs(spec, "train"), tokenizer, spec.batch_size, seed,
            max_source_length=spec.block_size, max_target_length=spec.block_size,
            validation_pairs=_pairs(spec, "validation"), num_eval_batches=20,
            decoder_start_token_id=_decoder_start(tokenizer),
        )
    train = build_shard(spec.corpus, tokenizer, cache_dir, "train", spec.text_field)
    validation = build_shard(spec.corpus, tokenizer, cache_dir, "validation", spec.text_field)
    if spec.arch == "decoder":
        return CausalLMSource(train, spec.block_size, spec.batch_size, seed, spec.document_aware, validation)
    if not isinstance(tokenizer, Tokenizer) or tokenizer.mask_token_id is None:
        raise DataError("masked-LM pretraining needs a tokenizer with [MASK], [CLS] and [SEP]; use --tokenizer wordpiece")
    ids = MLMTokens.from_tokenizer(tokenizer, whole_word=spec.whole_word)
    return MLMSource(train, ids, spec.block_size, spec.batch_size, seed, spec.nsp, spec.whole_word, validation)


def build_objective(spec: PretrainSpec):
    if spec.arch == "encoder":
        return MaskedLM(nsp=spec.nsp)
    if spec.arch == "decoder":
        return CausalLM()
    return Seq2SeqLM(label_smoothing=spec.label_smoothing)


# ---- running ----------------------------------------------------------------------------------
def run(spec: PretrainSpec, out_dir: str | Path, resume: bool = False) -> list[dict]:
    """Pretrain (or resume) into out_dir; returns the trainer's history."""
    from polyformer.models import PolyformerModel

    out = Path(out_dir)
    start = _init_model(spec) if spec.init else None
    if start is not None:
        spec = dataclasses.replace(spec, arch=start.config.arch)
    train_config = spec.train_config(out)
    seed_everything(train_config.seed)  # first: the initial weights come from the run's seed, on every rank
    info, _ = dist.init_distributed(train_config.device)
    failure: str | None = None
    if info.is_main:
        try:
            _prepare_run_dir(spec, out, resume)
        except PolyformerError as err:
            failure = str(err)
    # the other ranks wait here for rank 0's tokenizer and shards (or its error)
    failure = dist.broadcast_object(failure, info)
    if failure is not None:
        raise ConfigError(failure)
    tokenizer = load_tokenizer(out / "tokenizer")
    source = build_source(spec, tokenizer, out / "shards", train_config.seed)
    model = PolyformerModel(model_config(spec, tokenizer)) if start is None else continued_model(spec, start, tokenizer)
    data_settings = {key: value for key, value in spec.to_dict().items() if key != "train"}  # the trainer checks train
    trainer = Trainer(model, build_objective(spec), source, train_config, run_info={"pretrain": data_settings})
    history = trainer.train(resume=resume)
    if info.is_main:
        from polyformer.io.loader import save

        save(trainer.model, out / "model")
        tokenizer.save(out / "model")
    return history


def _init_model(spec: PretrainSpec):
    from polyformer.io.loader import load

    model = load(spec.init)  # type: ignore[arg-type]
    if spec.arch is not None and spec.arch != model.config.arch:
        raise ConfigError(f"arch={spec.arch!r} but {spec.init} holds a {model.config.arch} model; leave --arch out with --init")
    return model


def continued_model(spec: PretrainSpec, start, tokenizer: Tokenizer | CharTokenizer):
    """The init weights with the objective's head (a fresh one when the checkpoint has another) and the overrides."""
    from polyformer.models import with_fresh_head

    config = start.config
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but {spec.init} embeds {config.vocab_size}; "
                          "continue pretraining with the checkpoint's own tokenizer (leave --tokenizer out)")
    if spec.block_size + 1 > config.max_positions and config.position == "learned":
        raise ConfigError(f"block_size={spec.block_size} exceeds the {config.max_positions} positions of {spec.init}")
    head = "lm" if spec.arch != "encoder" else ("pretraining" if spec.nsp else "mlm")
    try:
        wanted = config.replace(head=head, pooler=config.pooler or head == "pretraining", **spec.model)
    except TypeError as err:
        raise ConfigError(f"model: {err}") from None
    model = start if wanted == config else with_fresh_head(start, wanted)
    return model.train()


def _prepare_run_dir(spec: PretrainSpec, out: Path, resume: bool) -> None:
    spec_path = out / SPEC_FILE
    if resume:
        if not spec_path.is_file():
            raise ConfigError(f"{out}: not a pretraining run directory (no {SPEC_FILE}) — nothing to resume")
        return
    if spec_path.exists():
        raise ConfigError(f"{out}: already holds a pretraining run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    tokenizer.save(out / "tokenizer")
    if spec.arch != "encoder-decoder":
        for split in ("train", "validation"):
            build_shard(spec.corpus, tokenizer, out / "shards", split, spec.text_field)
    write_atomic(spec_path, yaml.safe_dump(spec.to_dict(), sort_keys=False))


def resume(run_dir: str | Path, **train_overrides: Any) -> list[dict]:
    """Continue a run from its latest checkpoint (e.g. with a larger max_steps)."""
    run_dir = Path(run_dir)
    if not (run_dir / SPEC_FILE).is_file():
        raise ConfigError(f"{run_dir}: not a pretraining run directory (no {SPEC_FILE}) — nothing to resume")
    spec = dataclass_from_yaml(PretrainSpec, run_dir / SPEC_FILE)
    spec.train.update(train_overrides)
    return run(spec, run_dir, resume=True)
