"""What a CPU user would run instead, driven the same way as polyformer: llama.cpp and ONNX Runtime.

Both are optional (`pip install -r requirements-bench.txt`); `available()` says which are here.

- `LlamaCppDecoder`: llama.cpp through `llama-cpp-python`'s C API, greedy, a batch of prompts as
  parallel sequences of one context (a `llama_batch` per step, one logit row per sequence), so
  batch 8 is one decode call per step, as in llama.cpp's own batched example.
  `requantize` writes another precision of a GGUF file with llama.cpp's quantizer.
- `OnnxEncoder`: a sentence-transformers-style encoder (mean pooling, normalised) exported to
  ONNX with `torch.onnx.export`, run by ONNX Runtime with all graph optimisations, optionally
  dynamically quantized to int8 (`onnxruntime.quantization.quantize_dynamic`), the recipe of
  optimum / fastembed / TEI's CPU paths.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import numpy as np
import torch

LLAMA_FTYPES = {"F32": "LLAMA_FTYPE_ALL_F32", "F16": "LLAMA_FTYPE_MOSTLY_F16", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
                "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1", "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def available() -> dict[str, bool]:
    """Which peers are installed: {"llama.cpp": ..., "onnxruntime": ...}."""
    return {"llama.cpp": importlib.util.find_spec("llama_cpp") is not None,
            "onnxruntime": importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None}


# ---- llama.cpp ---------------------------------------------------------------------------------
_QUIET: list = []  # the log callback, kept alive as long as llama.cpp may call it


def _quiet_llama_cpp():
    """llama.cpp's module with its log lines (every tensor and buffer it loads) switched off."""
    import llama_cpp

    if not _QUIET:
        _QUIET.append(llama_cpp.llama_log_callback(lambda level, text, data: None))
        llama_cpp.llama_log_set(_QUIET[0], ctypes.c_void_p(0))
    return llama_cpp


def requantize(source: Path, target: Path, precision: str, threads: int = 2) -> Path:
    """Write `source` at another precision (F32, F16, Q8_0, Q4_1, Q4_0) with llama.cpp's quantizer."""
    llama_cpp = _quiet_llama_cpp()

    if target.exists():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[precision])
    params.allow_requantize = True
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"llama.cpp could not write {target} as {precision} (status {status})")
    return target


class LlamaCppDecoder:
    """Greedy decoding of a batch of prompts with llama.cpp: (B, T) ids, n → (B, n) new ids."""

    def __init__(self, path: Path, threads: int, max_batch: int, max_length: int) -> None:
        llama_cpp = _quiet_llama_cpp()

        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max_batch * max_length
        params.n_batch = params.n_ubatch = max(512, max_batch * max_length)
        params.n_seq_max = max_batch
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, max_batch)

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_batch of (token, position, sequence, wants logits) entries."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = logits

    def _decode_and_choose(self, rows: list[int]) -> list[int]:
        if self.lib.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")
        choices = []
        for row in rows:
            logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, row), shape=(self.vocab,))
            choices.append(int(logits.argmax()))
        return choices

    def __call__(self, prompts: torch.Tensor, new: int) -> torch.Tensor:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        batch, length = prompts.shape
        ids = prompts.tolist()
        self._fill([(ids[s][i], i, s, i == length - 1) for s in range(batch) for i in range(length)])
        tokens = self._decode_and_choose([s * length + length - 1 for s in range(batch)])
        out = [tokens]
        for step in range(1, new):
            self._fill([(tokens[s], length + step - 1, s, True) for s in range(batch)])
            tokens = self._decode_and_choose(list(range(batch)))
            out.append(tokens)
        return torch.tensor(out).t()  # (B, n)

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)


# ---- ONNX Runtime ------------------------------------------------------------------------------
class _HiddenStates(torch.nn.Module):
    """A transformers encoder called by keyword, returning its last hidden states (what ONNX exports)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def export_onnx(hf_folder: Path, target: Path, int8: bool = False) -> Path:
    """The transformers encoder of `hf_folder` as ONNX (dynamic batch and length); int8: quantize_dynamic."""
    if target.exists():
        return target
    fp32 = target if not int8 else target.with_name(target.stem + "-fp32.onnx")
    if not fp32.exists():
        from transformers import AutoModel

        model = _HiddenStates(AutoModel.from_pretrained(hf_folder).eval())
        ids = torch.ones(2, 16, dtype=torch.long)
        axes = {0: "batch", 1: "length"}
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(fp32),
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["hidden"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "hidden": axes},
                          opset_version=17, dynamo=False)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
    return target


class OnnxEncoder:
    """Mean-pooled, normalised sentence vectors from an ONNX encoder (texts sorted by length, as
    sentence-transformers batches them), tokenized by the model's own fast tokenizer."""

    def __init__(self, onnx_path: Path, hf_folder: Path, threads: int, max_length: int = 256) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.max_length = AutoTokenizer.from_pretrained(hf_folder), max_length

    def _batch(self, texts: list[str]) -> np.ndarray:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feed = {name: inputs[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        hidden = self.session.run(None, feed)[0]  # (B, T, D)
        mask = feed["attention_mask"][..., None]
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, D): mean over real tokens
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), 0), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors = self._batch([texts[i] for i in chunk])
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        return out
