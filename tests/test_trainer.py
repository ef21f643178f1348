"""The trainer: schedules, weight-decay groups, exact accumulation, evaluation, logging."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml
from train_tiny import MergedSource, RandomSource, build_model, objective_for, one_thread, quiet_config

from polyformer.cli.main import main as cli_main
from polyformer.errors import ConfigError
from polyformer.training.logging import read_metrics
from polyformer.training.optim import build_optimizer, split_decay
from polyformer.training.schedules import learning_rate
from polyformer.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- schedules -------------------------------------------------------------------------------------
def test_schedules_at_known_steps():
    lr, low = 1.0, 0.1
    # linear warmup over 10 updates: the first update is at lr/10, update 10 at the peak
    assert learning_rate("cosine", 0, lr, low, 10, 110) == pytest.approx(0.1)
    assert learning_rate("cosine", 4, lr, low, 10, 110) == pytest.approx(0.5)
    assert learning_rate("cosine", 9, lr, low, 10, 110) == pytest.approx(1.0)
    assert learning_rate("cosine", 10, lr, low, 10, 110) == pytest.approx(1.0)
    assert learning_rate("cosine", 60, lr, low, 10, 110) == pytest.approx(low + 0.5 * (lr - low))  # half way
    assert learning_rate("cosine", 35, lr, low, 10, 110) == pytest.approx(low + 0.5 * (1 + math.cos(math.pi / 4)) * (lr - low))
    assert learning_rate("cosine", 110, lr, low, 10, 110) == pytest.approx(low)
    assert learning_rate("cosine", 500, lr, low, 10, 110) == pytest.approx(low)
    assert learning_rate("linear", 60, lr, 0.0, 10, 110) == pytest.approx(0.5)
    assert learning_rate("inverse_sqrt", 9, lr, 0.0, 10, 0) == pytest.approx(1.0)
    assert learning_rate("inverse_sqrt", 39, lr, 0.0, 10, 0) == pytest.approx(0.5)  # sqrt(10 / 40)
    assert learning_rate("inverse_sqrt", 999, lr, 0.0, 10, 0) == pytest.approx(0.1)
    assert learning_rate("constant", 2, lr, 0.0, 4, 0) == pytest.approx(0.75)
    assert learning_rate("constant", 1000, lr, 0.0, 4, 0) == 1.0
    assert learning_rate("cosine", 0, lr, low, 0, 100) == 1.0  # no warmup
    with pytest.raises(ConfigError, match="schedule"):
        learning_rate("step", 0, lr)


# ---- optimizer -------------------------------------------------------------------------------------
def test_weight_decay_groups_exclude_biases_norms_and_embeddings():
    model = build_model("mlm")
    groups = split_decay(model)
    assert groups.decay_names and groups.no_decay_names
    assert all(not name.endswith("bias") for name in groups.decay_names)
    assert all("norm" not in name for name in groups.decay_names)
    assert all("embeddings" not in name for name in groups.decay_names)
    assert "body.embeddings.tokens.weight" in groups.no_decay_names  # also the tied MLM projection
    assert "body.embeddings.positions.weight" in groups.no_decay_names
    assert any(name.endswith("q.weight") or "attn" in name for name in groups.decay_names)
    params = {id(p) for p in model.parameters()}
    assert len(groups.decay) + len(groups.no_decay) == len(params)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert optimizer.param_groups[0]["fused"]  # torch's fused AdamW on the CPU too


# ---- exact gradient accumulation -------------------------------------------------------------------
def _gradients_and_step(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    trainer.setup()
    sums, counts = trainer.accumulate(trainer.micro_batches(0))
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad()
    trainer.train_step(0)
    params = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    return grads, params, float((sums / counts).sum())


@pytest.mark.parametrize("kind", ["causal", "mlm", "seq2seq"])
def test_accumulation_equals_one_batch_k_times_larger(kind):
    k = 4
    micro = RandomSource(kind, rows=2)
    label_counts = [int((micro.global_batch(0, m)["labels"] != -100).sum()) for m in range(k)]
    assert len(set(label_counts)) > 1, "micro-batches should carry different numbers of labels"
    config = dict(max_steps=1, grad_clip=1.0, weight_decay=0.1, lr=1e-3, warmup_steps=0)
    accumulated = Trainer(build_model(kind), objective_for(kind), micro, quiet_config(micro_batches=k, **config))
    merged = Trainer(build_model(kind), objective_for(kind), MergedSource(micro, k), quiet_config(micro_batches=1, **config))
    grads_a, params_a, loss_a = _gradients_and_step(accumulated)
    grads_b, params_b, loss_b = _gradients_and_step(merged)
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    for name in grads_b:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-7, rtol=1e-5), name
        assert torch.allclose(params_a[name], params_b[name], atol=1e-6, rtol=0), name


# ---- evaluation, best checkpoint, early stopping, logs ------------------------------------------------
def test_early_stopping_on_a_dev_metric_keeps_the_best(tmp_path):
    scores = iter([0.5, 0.9, 0.7, 0.8, 0.6])  # best at the 2nd evaluation, then 3 without improvement

    def evaluate(model):
        return {"accuracy": next(scores)}

    config = quiet_config(max_steps=20, eval_every=1, metric_for_best="eval_accuracy", greater_is_better=True,
                          early_stopping_patience=3, out_dir=str(tmp_path), schedule="constant")
    history = Trainer(build_model("causal"), objective_for("causal"), RandomSource("causal"), config, evaluate=evaluate).train()
    assert [row["step"] for row in history] == [1, 2, 3, 4, 5]
    assert [row["eval_accuracy"] for row in history] == [0.5, 0.9, 0.7, 0.8, 0.6]
    assert all("eval_loss" in row and "eval_lm_accuracy" in row for row in history)
    best = yaml.safe_load((tmp_path / "checkpoints" / "best" / "metrics.json").read_text())
    assert best["step"] == 2 and best["eval_accuracy"] == 0.9
    assert (tmp_path / "checkpoints" / "step-000005").is_dir()  # saved where it stopped


def test_run_dir_has_csv_tensorboard_plot_and_resolved_config(tmp_path):
    config = quiet_config(max_steps=4, eval_every=2, out_dir=str(tmp_path), tensorboard=True, plot=True)
    Trainer(build_model("mlm"), objective_for("mlm"), RandomSource("mlm"), config, run_info={"corpus": "random"}).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert {"loss", "mlm_loss", "nsp_loss", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert rows[0]["loss"] == pytest.approx(rows[0]["mlm_loss"] + rows[0]["nsp_loss"])
    assert {"eval_loss", "eval_mlm_accuracy", "eval_nsp_accuracy"} <= set(rows[1]) and "eval_loss" not in rows[0]
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    run = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert run["model"]["head"] == "pretraining" and run["objective"] == {"name": "masked-lm", "nsp": True}
    assert run["batch"]["input_ids"] == [4, 8] and run["train"]["max_steps"] == 4 and run["data"] == {"corpus": "random"}

    (tmp_path / "plot.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["plot", str(tmp_path)])
    assert exit_info.value.code in (0, None)
    assert (tmp_path / "plot.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["plot", str(tmp_path / "nothing-here")])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_autocast_trains(dtype):
    history = Trainer(build_model("causal"), objective_for("causal"), RandomSource("causal"), quiet_config(max_steps=2, dtype=dtype)).train()
    assert all(math.isfinite(row["loss"]) for row in history)


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_on_a_cpu_without_native_products_warns_once_at_setup(monkeypatch, native):
    monkeypatch.setattr("polyformer.training.trainer.cpu_has_native_bfloat16", lambda: native)
    trainer = Trainer(build_model("causal"), objective_for("causal"), RandomSource("causal"), quiet_config(max_steps=1, dtype="bfloat16"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.setup()
    messages = [str(w.message) for w in caught if "native bfloat16" in str(w.message)]
    assert len(messages) == (0 if native else 1)


def test_train_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="micro_batches"):
        TrainConfig(micro_batches=0)
    with pytest.raises(ConfigError, match="dtype"):
        TrainConfig(dtype="float8")
    with pytest.raises(ConfigError, match="fsdp"):
        TrainConfig(dtype="float16", fsdp=True)
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"max_step": 3})
    assert TrainConfig.from_dict(TrainConfig(betas=[0.9, 0.99]).to_dict()).betas == (0.9, 0.99)


@pytest.mark.slow
def test_compiled_training_matches_eager():
    eager = Trainer(build_model("causal"), objective_for("causal"), RandomSource("causal"), quiet_config(max_steps=3)).train()
    compiled = Trainer(build_model("causal"), objective_for("causal"), RandomSource("causal"), quiet_config(max_steps=3, compile=True)).train()
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], abs=1e-4)
