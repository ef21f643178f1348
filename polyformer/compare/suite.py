"""`run_compare`: the whole comparison — models, every (model, task, seed) sub-run, the outputs.

    results = run_compare(CompareSpec(data=["shakespeare"], budget_tokens=1_000_000, seeds=3), "runs/compare")

OUT holds `compare.yaml` (the spec; a second start with other settings is refused), the shared
tokenizer and `plan.json` (from scratch), `runs/<model>/<task>/seed-<s>/` (runs.py) and, at the
end, `compare.json` (results.py), `compare.md` and `report.html` (report.py). Seeds are the outer
loop, so the first seed's column fills first. A killed comparison started again with the same
command skips what finished and continues the rest (runs.py).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from polyformer.compare import report, scratch
from polyformer.compare.matching import relative_gap
from polyformer.compare.results import assemble
from polyformer.compare.runs import SubRun
from polyformer.compare.spec import SCRATCH_ARCHS, CompareSpec, ModelEntry
from polyformer.compare.tasks import Context, applies, run_task, seed_dependent
from polyformer.errors import ConfigError
from polyformer.io.safetensors_io import write_json
from polyformer.runtime import write_atomic
from polyformer.training.checkpoint import config_differences

SPEC_FILE = "compare.yaml"
HEADS = {"encoder": "pretraining", "decoder": "lm", "encoder-decoder": "lm"}
ATTENTION_TOKENS = 24  # the report's heatmaps show at most this many tokens a side


def command_line(spec: CompareSpec, out: Path) -> str:
    """The `polyformer compare` command that repeats this comparison."""
    words = ["polyformer", "compare"]
    if spec.scratch:
        words += [w for item in spec.data for w in ("--data", item)]
        words += ["--size", spec.size, "--match", spec.match, "--budget-tokens", str(spec.budget_tokens)]
    else:
        words += ["--models", *spec.models]
    words += ["--seeds", str(spec.seeds), "--tasks", ",".join(spec.tasks)]
    defaults = CompareSpec()
    for name in ("vocab_size", "block_size", "batch_size", "lr", "finetune_steps", "finetune_batch_size", "finetune_lr",
                 "max_length", "contrastive_steps", "eval_limit", "max_new_tokens", "prompt"):
        if getattr(spec, name) != getattr(defaults, name):
            words += [f"--{name.replace('_', '-')}", str(getattr(spec, name))]
    words += [w for key, value in spec.task_data.items() for w in ("--task-data", f"{key}={value}")]
    return shlex.join([*words, "--out", str(out)])


def _check_spec(spec: CompareSpec, out: Path) -> None:
    """Write OUT/compare.yaml, or check that a comparison already there has the same settings."""
    path = out / SPEC_FILE
    requested = yaml.safe_load(yaml.safe_dump(spec.to_dict()))
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        differences = config_differences(saved, requested, {"device"})
        if differences:
            raise ConfigError(f"{out} holds a comparison with other settings ({'; '.join(differences[:3])}); "
                              "run it with its own settings to continue it, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(requested, sort_keys=False))


class Comparison:
    """One comparison being run: where it writes, what it prints, what has finished."""

    def __init__(self, spec: CompareSpec, out: Path, console) -> None:
        self.spec, self.out, self.console = spec, out, console
        self.records: list[dict[str, Any]] = []
        self.plans: dict[str, scratch.ArchPlan] = {}

    def sub_run(self, model: str, task: str, seed: int, work) -> dict[str, Any]:
        """The finished record of a sub-run: read back, or produced by `work(run)` now."""
        run = SubRun(self.out, model, task, seed)
        if run.done:
            record = run.result()
        else:
            started = time.perf_counter()
            self.console.print(f"[bold]{model}[/bold] {task} seed {seed} …")
            record = run.finish(work(run))
            self.console.print(f"  done in {time.perf_counter() - started:.1f} s")
        self.records.append(record)
        return record

    # ---- models ----------------------------------------------------------------------------------
    def scratch_entries(self, seed: int) -> list[ModelEntry]:
        """The three forms pretrained for `seed` (pretraining them first when needed)."""
        tokenizer_dir = self.out / scratch.TOKENIZER_DIR
        entries = []
        for arch in SCRATCH_ARCHS:
            plan = self.plans[arch]
            record = self.sub_run(arch, "pretrain", seed, lambda run, p=plan: scratch.pretrain(run, self.spec, p, tokenizer_dir))
            entries.append(ModelEntry(arch, arch, HEADS[arch], record["model_dir"]))
        return entries

    def prepare_scratch(self) -> None:
        tokenizer = scratch.shared_tokenizer(self.spec, self.out)
        self.plans = scratch.make_plan(self.spec, self.out, tokenizer)
        counts = {arch: plan.non_embedding_parameters for arch, plan in self.plans.items()}
        shown = " · ".join(f"{arch} {count:,}" for arch, count in counts.items())
        self.console.print(f"non-embedding parameters: {shown} (largest gap {relative_gap(counts):.1%}; --match {self.spec.match})")
        steps = " · ".join(f"{arch} {plan.max_steps} steps × {plan.tokens_per_step:.0f} tokens" for arch, plan in self.plans.items())
        self.console.print(f"pretraining budget {self.spec.budget_tokens:,} tokens each: {steps}")

    def pretrained_entries(self) -> list[ModelEntry]:
        from polyformer.compare.runs import model_names
        from polyformer.io.loader import load
        from polyformer.locations import resolve

        entries = []
        for name, spec in zip(model_names(self.spec.models), self.spec.models):
            config = load(resolve(spec)).config
            entries.append(ModelEntry(name, config.arch, config.head, spec))
        return entries

    # ---- the suite ---------------------------------------------------------------------------------
    def run_tasks(self, entry: ModelEntry, seed: int) -> None:
        for task in self.spec.tasks:
            if not applies(task, entry) or (seed > 0 and not seed_dependent(task, self.spec)):
                continue
            self.sub_run(entry.name, task, seed,
                         lambda run, t=task: run_task(t, Context(self.spec, entry, seed, run.fresh(), self.out)))
        if seed == 0:
            self.sub_run(entry.name, "attention", 0, lambda run: {"extra": {"maps": [attention_pattern(entry, self.spec)]}})


def attention_pattern(entry: ModelEntry, spec: CompareSpec) -> dict[str, Any]:
    """The model's characteristic map on the report's sentence: the last layer, averaged over heads."""
    from polyformer.compare.attention import attention_maps
    from polyformer.tasks.models import load_pretrained

    model, tokenizer, _ = load_pretrained(entry.path)
    target = spec.attention_target if entry.arch == "encoder-decoder" else None
    maps = attention_maps(model, tokenizer, spec.attention_text, target)
    kind = {"encoder": "bidirectional", "decoder": "causal", "encoder-decoder": "cross"}[entry.arch]
    chosen = [m for m in maps if m.kind == kind][-1]
    weights = chosen.weights.mean(axis=0)[:ATTENTION_TOKENS, :ATTENTION_TOKENS]  # (T, S)
    return {"kind": kind, "layer": chosen.layer, "query_tokens": chosen.query_tokens[:ATTENTION_TOKENS],
            "key_tokens": chosen.key_tokens[:ATTENTION_TOKENS], "weights": np.round(weights, 4).tolist()}


def model_rows(comparison: Comparison, entries: list[ModelEntry]) -> list[dict[str, Any]]:
    """compare.json's models: sizes, FLOPs and (from scratch) the tokens each was pretrained on."""
    from polyformer.compare.matching import flops_per_token, stack_parameters
    from polyformer.io.loader import load
    from polyformer.locations import resolve

    spec, rows = comparison.spec, []
    for entry in entries:
        model = load(resolve(entry.path))
        pretrain = [r for r in comparison.records if r["task"] == "pretrain" and r["model"] == entry.name]
        tokens = int(round(np.mean([r["tokens"] for r in pretrain]))) if pretrain else None
        plan = comparison.plans.get(entry.arch) if spec.scratch else None
        per_token = plan.flops_per_token if plan else flops_per_token(model.config, spec.block_size)
        rows.append({
            "name": entry.name, "arch": entry.arch, "head": entry.head,
            "source": f"pretrained from scratch on {', '.join(spec.data)}" if spec.scratch else entry.path,
            "objective": scratch.OBJECTIVES[entry.arch] if spec.scratch else None,
            "non_embedding_parameters": sum(stack_parameters(model.config).values()),
            "parameters": model.num_parameters(), "layers": plan.layout if plan else {},
            "flops_per_token": per_token, "pretrain_tokens": tokens,
            "total_flops": per_token * tokens if tokens else None,
            "pretrain_wall_s": float(np.mean([r["train_s"] for r in pretrain])) if pretrain else None,
        })
    return rows


def run_compare(spec: CompareSpec, out: str | Path, console=None) -> dict[str, Any]:
    """Run (or continue) the comparison into `out`; returns what compare.json holds."""
    from rich.console import Console

    out = Path(out)
    console = console or Console(stderr=True)
    _check_spec(spec, out)
    started = time.perf_counter()
    comparison = Comparison(spec, out, console)
    if spec.scratch:
        comparison.prepare_scratch()
    last: list[ModelEntry] = []
    for seed in range(spec.seeds):
        entries = comparison.scratch_entries(seed) if spec.scratch else (last or comparison.pretrained_entries())
        for entry in entries:
            comparison.run_tasks(entry, seed)
        last = last or entries
    settings = {**spec.to_dict(), "mode": spec.mode, "command": command_line(spec, out)}
    settings["match"] = spec.match if spec.scratch else None  # pretrained models are compared as they are
    results = assemble(settings, model_rows(comparison, last), comparison.records, time.perf_counter() - started)
    write_json(results, out / "compare.json")
    write_atomic(out / "compare.md", report.markdown(results))
    report.write_html(results, out / "report.html")
    report.print_table(results, console)
    console.print(f"{out / 'compare.json'}  {out / 'compare.md'}  {out / 'report.html'}")
    return results
