"""SmolLM2-135M decode on CPU: polyformer's generation engine vs `transformers.generate`, same weights.

Both models come from the one Q4_1 GGUF file, dequantized to float32 (polyformer with `load_gguf`,
transformers with `from_pretrained(dir, gguf_file=name)`). Prompts are Shakespeare passages of
`prompt_tokens` tokens; every run decodes exactly `new_tokens` greedy tokens per row (EOS held
back on both sides with min_new_tokens), so both do the same work. Per batch size:

- time to first token (TTFT): the median wall time of a 1-token request (prefill + one choice);
- decode tokens/s: batch * (new_tokens - 1) / (median time of the full request - median TTFT),
  and the same from the fastest runs (the least disturbed on a shared machine);
- greedy agreement: polyformer fp32 must give transformers' tokens exactly; each other variant
  (a reduced precision, see `polyformer.precision`, or the decode step under `torch.compile`) is
  compared with polyformer fp32 eager (identical rows, and the mean fraction of each row before
  the first difference);
- held-out perplexity of each precision on a Shakespeare passage of `ppl_tokens` tokens.

Every variant (and each request length) runs once before timing, then all are timed in
alternation `repeats` times, so background load hits them alike; medians are reported.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

import torch

from polyformer.bench.timing import log, peak_rss_mb, time_alternating

MODEL = "SmolLM2-135M-Instruct"
HELD_OUT_WORK = "twelfth_night"  # one of the works held out of polyformer's Shakespeare pretraining split


@dataclass
class DecodeSettings:
    batches: list[int] = field(default_factory=lambda: [1, 32])
    prompt_tokens: int = 32
    new_tokens: int = 32
    repeats: int = 3
    # (precision, compiled decode step) beside the fp32 eager default; compiling costs a minute or two per shape
    variants: tuple[tuple[str, bool], ...] = (("int8", False), ("bfloat16", False), ("float32", True), ("int8", True))
    ppl_tokens: int = 1024


def variant_name(precision: str, compiled: bool) -> str:
    name = "polyformer" if precision == "float32" else f"polyformer {precision}"
    return f"{name} compiled" if compiled else name


def shakespeare_prompts(tokenizer, count: int, length: int) -> torch.Tensor:
    """`count` different passages of exactly `length` tokens, (count, length)."""
    from polyformer.data.readers import read_shakespeare

    text = dict(read_shakespeare())["hamlet"]
    ids = tokenizer.encode(text, add_special_tokens=False)
    return torch.tensor([ids[i * 997 : i * 997 + length] for i in range(count)])


def perplexity(model, ids: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) of one passage (1, T)."""
    with torch.inference_mode():
        logits = model(ids).logits[0, :-1].float()
    return math.exp(torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item())


def agreement(rows: torch.Tensor, reference: torch.Tensor) -> dict:
    """Identical rows, and the mean fraction of each row before its first difference."""
    same = rows == reference  # (B, T)
    first_diff = torch.where(same.all(-1), same.shape[1], (~same).int().argmax(-1))
    return {"identical_rows": int(same.all(-1).sum()), "rows": rows.shape[0],
            "prefix_fraction": float(first_diff.float().mean() / same.shape[1])}


def run(settings: DecodeSettings | None = None) -> dict:
    """Time every variant at every batch size; returns a JSON-ready record."""
    settings = settings or DecodeSettings()
    if importlib.util.find_spec("accelerate") is None:
        return {"skipped": "transformers reads GGUF files only with accelerate installed (pip install accelerate)"}
    from transformers import AutoModelForCausalLM

    from polyformer.data import catalog
    from polyformer.data.readers import read_shakespeare
    from polyformer.generation import generate, make_config
    from polyformer.io.gguf import load_gguf
    from polyformer.precision import apply_precision
    from polyformer.tokenizers import load_tokenizer

    path = catalog.fetch(MODEL)
    tokenizer = load_tokenizer(path)
    weights = {"float32": load_gguf(path)}
    for precision, _ in settings.variants:
        if precision not in weights:
            weights[precision] = apply_precision(load_gguf(path), precision)
    ours = {variant_name(precision, compiled): (weights[precision], compiled)
            for precision, compiled in (("float32", False), *settings.variants)}
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    held_out = torch.tensor([tokenizer.encode(dict(read_shakespeare())[HELD_OUT_WORK][20_000:],
                                              add_special_tokens=False)[: settings.ppl_tokens]])
    quality = {variant_name(precision, False): {"perplexity": perplexity(model, held_out)} for precision, model in weights.items()}
    quality["transformers"] = {"perplexity": perplexity(theirs, held_out)}

    rows = []
    for batch in settings.batches:
        ids = shakespeare_prompts(tokenizer, batch, settings.prompt_tokens)
        mask = torch.ones_like(ids)
        outputs: dict[str, torch.Tensor] = {}

        def ours_fn(model, compiled: bool, name: str, new: int):
            config = make_config(max_new_tokens=new, min_new_tokens=new, cache="static" if compiled else "auto",
                                      compile=compiled)
            return lambda: outputs.__setitem__((name, new), generate(model, ids, mask, config).sequences)

        def theirs_fn(new: int):
            def call() -> None:
                with torch.inference_mode():
                    out = theirs.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                          min_new_tokens=new, pad_token_id=tokenizer.eos_token_id)
                outputs[("transformers", new)] = out[:, ids.shape[1]:]
            return call

        fns = {}
        for new in (1, settings.new_tokens):
            fns.update({(name, new): ours_fn(model, compiled, name, new) for name, (model, compiled) in ours.items()})
            fns[("transformers", new)] = theirs_fn(new)
        log(f"decode: batch {batch}, {settings.prompt_tokens}-token prompts, {settings.new_tokens} new tokens, "
            f"{settings.repeats} repeats of {len(fns)} variants")
        timings = time_alternating(fns, settings.repeats)
        rows.append(_row(batch, settings, timings, outputs))
    return {
        "work": f"{MODEL} greedy decode from the Q4_1 GGUF (float32 unless named)",
        "prompt_tokens": settings.prompt_tokens,
        "new_tokens": settings.new_tokens,
        "threads": torch.get_num_threads(),
        "batches": rows,
        "quality": quality,
        "perplexity_text": f"{settings.ppl_tokens} tokens of {HELD_OUT_WORK}",
        "peak_rss_mb": peak_rss_mb(),
    }


def _row(batch: int, settings: DecodeSettings, timings: dict, outputs: dict) -> dict:
    new = settings.new_tokens
    names = sorted({name for name, _ in timings})
    ttft = {name: timings[(name, 1)].median_s for name in names}
    total = {name: timings[(name, new)].median_s for name in names}
    decode = {name: batch * (new - 1) / max(total[name] - ttft[name], 1e-9) for name in names}
    best = {name: batch * (new - 1) / max(timings[(name, new)].best_s - timings[(name, 1)].best_s, 1e-9) for name in names}
    reference = outputs[("polyformer", new)]
    return {
        "batch": batch,
        "ttft_ms": {name: value * 1000 for name, value in ttft.items()},
        "decode_tokens_per_s": decode,
        "ms_per_step": {name: 1000 * batch / rate for name, rate in decode.items()},
        "ratio_vs_transformers": {name: decode[name] / decode["transformers"] for name in names if name != "transformers"},
        "ratio_vs_transformers_best_runs": {name: best[name] / best["transformers"] for name in names if name != "transformers"},
        "ttft_ratio_vs_transformers": {name: ttft["transformers"] / ttft[name] for name in names if name != "transformers"},
        "agreement_with_transformers": agreement(reference, outputs[("transformers", new)]),
        "agreement_with_fp32": {name: agreement(outputs[(name, new)], reference)
                                for name in names if name not in ("polyformer", "transformers")},
        "timings": {f"{name} x{length}": timing.as_dict() for (name, length), timing in timings.items()},
    }
