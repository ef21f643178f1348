"""`polyformer compare`: the matching rule, a tiny comparison end to end, its JSON schema, its report in
headless Chromium, resume after SIGKILL, pretrained mode and the user errors.

The end-to-end runs are micro-sized (hidden 32, 2 layers) on tiny local files (tests/compare_tiny.py),
so a whole from-scratch comparison takes seconds; each runs in its own process, as a user's would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from browser import Page, assert_not_blank, chromium
from cli_runner import assert_one_line_error, run_cli
from compare_tiny import compare_args, write_data
from task_tiny import FAST, decoder_dir, encoder_dir, wordpiece_tokenizer

import polyformer as pf
from polyformer.compare import matching
from polyformer.compare.results import SCHEMA_FILE, summarize
from polyformer.compare.spec import CompareSpec
from polyformer.errors import ConfigError

HOOKED = Path(__file__).with_name("hooked_cli.py")
TASKS = "classify,perplexity,embed"
TIMING = ("wall_s", "train_s", "pretrain_wall_s", "seconds")


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(HOOKED), *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return output


# ---- the matching rule --------------------------------------------------------------------------
@pytest.mark.parametrize("size", list(matching.SIZES))
def test_params_matching_gives_the_same_non_embedding_parameters_within_five_percent(size):
    spec = matching.SIZES[size]
    layouts = matching.match_layouts(spec, "params")
    counts = {arch: matching.non_embedding_parameters(matching.sized(layout, spec)) for arch, layout in layouts.items()}
    assert matching.relative_gap(counts) <= matching.TOLERANCE
    split = layouts["encoder-decoder"]
    assert split.num_layers + split.num_decoder_layers == spec.num_layers  # the layers are shared out
    assert split.intermediate_size < spec.intermediate_size  # the cross-attention is paid for with MLP width
    assert split.intermediate_size % matching.WIDTH_MULTIPLE == 0


def test_flops_matching_is_t5s_l_plus_l_with_about_twice_the_parameters():
    size = matching.SIZES["tiny"]
    layouts = matching.match_layouts(size, "flops")
    assert (layouts["encoder-decoder"].num_layers, layouts["encoder-decoder"].num_decoder_layers) == (4, 4)
    configs = {arch: matching.sized(layout, size, vocab_size=8000) for arch, layout in layouts.items()}
    counts = {arch: matching.non_embedding_parameters(config) for arch, config in configs.items()}
    assert 2.0 <= counts["encoder-decoder"] / counts["decoder"] <= 2.5  # 2x, plus the cross-attention
    flops = {arch: matching.flops_per_token(config, 64) for arch, config in configs.items()}
    assert flops["encoder"] == flops["decoder"]
    assert 0.75 <= flops["encoder-decoder"] / flops["decoder"] <= 1.1  # about the same cost per token
    params = {arch: matching.sized(layout, size, 8000) for arch, layout in matching.match_layouts(size, "params").items()}
    assert matching.flops_per_token(params["encoder-decoder"], 64) < 0.6 * flops["decoder"]  # half the layers a token


def test_parameter_counts_are_those_of_the_real_models():
    size = matching.SIZES["micro"]
    for layout in matching.match_layouts(size, "params").values():
        config = matching.sized(layout, size, vocab_size=300)
        model = pf.PolyformerModel(config)
        embeddings = sum(p.numel() for p in model.embeddings.parameters())
        assert matching.non_embedding_parameters(config) == model.num_parameters() - embeddings
    with pytest.raises(ConfigError, match="differ by more than 5%"):
        matching.check_matched({"encoder": 100, "decoder": 100, "encoder-decoder": 106}, "params")
    matching.check_matched({"encoder": 100, "decoder": 100, "encoder-decoder": 230}, "flops")
    with pytest.raises(ConfigError, match="--match 'size'"):
        matching.match_layouts(size, "size")


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [{"model": "m", "task": "t", "metric": "accuracy", "seed": s, "value": v} for s, v in enumerate([0.5, 0.7, 0.9])]
    rows.append({"model": "m", "task": "t", "metric": "perplexity", "seed": 0, "value": None})
    accuracy, perplexity = summarize(rows)
    assert accuracy["mean"] == pytest.approx(0.7) and accuracy["std"] == pytest.approx(0.2) and accuracy["n"] == 3
    assert perplexity["mean"] is None and perplexity["n"] == 0 and not perplexity["higher_is_better"]


# ---- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    return write_data(tmp_path_factory.mktemp("compare-data"))


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted micro comparison (one seed, three tasks), in its own process."""
    out = tmp_path_factory.mktemp("compare") / "reference"
    _finish(_start("--", *compare_args(tiny_data, out, TASKS)))
    return out


def test_a_tiny_comparison_writes_the_table_json_markdown_and_report(reference):
    results = json.loads((reference / "compare.json").read_text())
    assert [m["name"] for m in results["models"]] == ["encoder", "decoder", "encoder-decoder"]
    counts = {m["name"]: m["non_embedding_parameters"] for m in results["models"]}
    assert matching.relative_gap(counts) <= 0.05 and results["match"] == "params"
    assert all(m["pretrain_tokens"] >= 6000 and m["total_flops"] > 0 for m in results["models"])
    tasks = {(row["model"], row["task"]) for row in results["measurements"]}
    assert {("encoder", "classify"), ("decoder", "classify"), ("encoder-decoder", "classify")} <= tasks
    metrics = {(row["model"], row["metric"]) for row in results["measurements"]}
    assert ("encoder", "pseudo_perplexity") in metrics and ("decoder", "perplexity") in metrics
    assert ("encoder-decoder", "mean+contrastive/sentiment/knn_accuracy") in metrics
    assert all(row["seed"] == 0 and row["budget"]["pretrain_tokens"] and row["wall_s"] >= 0 for row in results["measurements"])
    accuracy = [row["value"] for row in results["measurements"] if row["metric"] == "accuracy"]
    assert len(accuracy) == 3 and all(0.0 <= value <= 1.0 for value in accuracy)
    assert {a["kind"] for a in results["attention"]} == {"bidirectional", "causal", "cross"}
    assert len(results["projections"]) == 3 and set(results["curves"]) == {"encoder", "decoder", "encoder-decoder"}
    assert results["settings"]["command"].startswith("polyformer compare --data ")
    table = (reference / "compare.md").read_text()
    assert "| classify | accuracy ↑ |" in table and "non-embedding parameters" in table
    assert (reference / "report.html").stat().st_size > 50_000


def test_compare_json_follows_its_schema(reference):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    results = json.loads((reference / "compare.json").read_text())
    jsonschema.validate(results, schema)
    broken = {**results, "measurements": [{**results["measurements"][0], "value": "high"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({key: value for key, value in results.items() if key != "models"}, schema)


def test_the_report_opens_in_chromium_with_every_image_loaded(reference, tmp_path):
    page = Page(chromium(), (reference / "report.html").as_uri(), tmp_path / "profile")
    try:
        page.wait("location.protocol === 'file:' && document.readyState === 'complete' && document.images.length > 0 "
                  "&& [...document.images].every(i => i.complete)")
        widths = page.evaluate("[...document.images].map(i => i.naturalWidth)")
        sources = page.evaluate("[...document.images].map(i => i.src.slice(0, 22))")
        assert len(widths) >= 5 and all(width > 0 for width in widths)
        assert set(sources) == {"data:image/png;base64,"}  # inline: the page needs nothing else
        assert page.evaluate("document.querySelectorAll('table')[0].rows.length") > 5
        image = page.screenshot()
        image.save(tmp_path / "report.png")
        assert_not_blank(image)
    finally:
        page.close()


def test_a_killed_comparison_resumes_to_the_same_results(reference, tiny_data, tmp_path):
    crashed = tmp_path / "crashed"
    args = compare_args(tiny_data, crashed, TASKS)
    run = _start("--delay", "0.05", "--", *args)
    checkpoints = crashed / "runs" / "decoder" / "pretrain" / "seed-0" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir())):
        assert run.poll() is None, run.communicate()[0]
        assert time.monotonic() < deadline, "the decoder's pretraining never checkpointed"
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    encoder_done = crashed / "runs" / "encoder" / "pretrain" / "seed-0" / "result.json"
    assert encoder_done.is_file() and not (crashed / "compare.json").exists()
    assert not (crashed / "runs" / "decoder" / "pretrain" / "seed-0" / "result.json").exists()
    finished_before = encoder_done.stat().st_mtime_ns

    output = _finish(_start("--", *args))
    assert "resumed at step" in output  # the decoder's pretraining continued from its checkpoint
    assert encoder_done.stat().st_mtime_ns == finished_before  # a finished sub-run is not run again

    def numbers(folder: Path):
        results = json.loads((folder / "compare.json").read_text())
        rows = [(r["model"], r["task"], r["metric"], r["seed"], r["value"]) for r in results["measurements"]]
        return rows, results["curves"], [m["pretrain_tokens"] for m in results["models"]]

    assert numbers(crashed) == numbers(reference)


def test_a_second_start_with_other_settings_is_refused(reference, tiny_data):
    args = compare_args(tiny_data, reference, TASKS)
    args[args.index("--seeds") + 1] = "2"
    assert_one_line_error(run_cli(*args), "other settings", "seeds")


# ---- pretrained models, user errors ---------------------------------------------------------------
def test_pretrained_mode_runs_the_suite_on_existing_models(tiny_data, tmp_path):
    texts = [json.loads(line)["text"] for line in tiny_data["sentiment"].read_text().splitlines()]
    tokenizer = wordpiece_tokenizer(texts)
    encoder, decoder = encoder_dir(tokenizer, tmp_path / "bert"), decoder_dir(tokenizer, tmp_path / "gpt")
    out = tmp_path / "pretrained"
    result = run_cli("compare", "--models", encoder, decoder, "--tasks", "classify,zero-shot", "--seeds", "2",
                     "--finetune-steps", "3", "--finetune-batch-size", "8", "--finetune-lr", str(FAST["lr"]),
                     "--eval-limit", "10", "--device", "cpu", "--task-data", f"classify={tiny_data['sentiment']}",
                     "--task-data", f"zero-shot={tiny_data['sentiment']}", "--out", out)
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "compare.json").read_text())
    assert results["mode"] == "pretrained" and results["match"] is None
    assert [(m["name"], m["arch"], m["pretrain_tokens"]) for m in results["models"]] == [
        ("bert", "encoder", None), ("gpt", "decoder", None)]
    seeds = {(r["model"], r["task"]): set() for r in results["measurements"]}
    for row in results["measurements"]:
        seeds[(row["model"], row["task"])].add(row["seed"])
    assert seeds == {("bert", "classify"): {0, 1}, ("gpt", "classify"): {0, 1}, ("gpt", "zero-shot"): {0}}
    assert "classify" in result.stderr and "zero-shot" in result.stderr  # the table


@pytest.mark.parametrize("args, needles", [
    (["--data", "x.txt", "--models", "m"], ["--data", "--models", "not both"]),
    (["--tasks", "classify,dance"], ["--tasks", "dance"]),
    (["--task-data", "classify"], ["--task-data", "TASK=FILE"]),
    (["--task-data", "music=x.jsonl"], ["--task-data", "music"]),
    (["--size", "huge"], ["--size", "huge", "tiny"]),
    (["--match", "both"], ["--match", "params"]),
    (["extra-model"], ["unexpected argument", "--models"]),
])
def test_user_mistakes_are_one_line(args, needles, tmp_path):
    assert_one_line_error(run_cli("compare", *args, "--out", tmp_path / "out"), *needles)


def test_the_spec_round_trips_through_its_yaml():
    spec = CompareSpec(data=["a.txt"], tasks=["embed", "classify"], seeds=2, task_data={"classify": "r.jsonl"})
    assert spec.tasks == ["classify", "embed"]
    again = CompareSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())), "compare.yaml")
    assert again == spec and torch.__version__
