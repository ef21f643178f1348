"""Bad checkpoints through the CLI: one clear `error:` line naming the file/field, exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from cli_runner import assert_one_line_error, run_cli, run_cli_process

transformers = pytest.importorskip("transformers")


@pytest.fixture()
def bert_dir(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=32)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


def test_info_and_convert_round_trip(bert_dir, tmp_path):
    result = run_cli("info", str(bert_dir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["arch"] == "encoder" and summary["head"] == "mlm"
    assert summary["parameters"] == transformers.BertForMaskedLM.from_pretrained(bert_dir).num_parameters()
    assert summary["stored_dtypes"] == {"F32": len(__import__("safetensors.torch").torch.load_file(bert_dir / "model.safetensors"))}
    assert run_cli("convert", str(bert_dir), str(tmp_path / "native"), "--to", "native").returncode == 0
    assert run_cli("convert", str(tmp_path / "native"), str(tmp_path / "hf"), "--to", "hf").returncode == 0
    again = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(1, 50, (2, 7))
    with torch.no_grad():
        ref = transformers.BertForMaskedLM.from_pretrained(bert_dir).eval()(ids).logits
        assert torch.allclose(again(ids).logits, ref, atol=1e-5)


def test_truncated_safetensors(bert_dir):
    weights = bert_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert_one_line_error(run_cli_process("info", str(bert_dir)), "model.safetensors", "truncated")


def test_config_missing_field(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    del config["hidden_size"]
    (bert_dir / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("info", str(bert_dir)), "config.json", "hidden_size")


def test_config_wrong_field_value(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    config["num_attention_heads"] = 5  # 16 is not divisible by 5
    (bert_dir / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("info", str(bert_dir)), "config.json", "num_heads=5")


def test_weights_not_matching_config(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    config["intermediate_size"] = 20
    (bert_dir / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("info", str(bert_dir)), "shape", "config.json")


def test_unknown_model_type(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    config["model_type"] = "whisper"
    (bert_dir / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("info", str(bert_dir)), "whisper", "config.json")


def test_pickle_refused_unless_allowed(bert_dir):
    from safetensors.torch import load_file

    state = load_file(bert_dir / "model.safetensors")
    (bert_dir / "model.safetensors").unlink()
    torch.save(state, bert_dir / "pytorch_model.bin")
    assert_one_line_error(run_cli("info", str(bert_dir)), "pytorch_model.bin", "--allow-pickle")
    allowed = run_cli("info", str(bert_dir), "--allow-pickle", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["head"] == "mlm"


def test_missing_path_and_unknown_catalog_name(tmp_path):
    assert_one_line_error(run_cli("info", str(tmp_path / "nowhere")), "nowhere")
    assert_one_line_error(run_cli("info", "not-a-catalog-model"), "not-a-catalog-model", "polyformer data list")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("info", str(tmp_path / "empty")), "config.json")


def test_convert_rejects_unknown_format(bert_dir, tmp_path):
    assert_one_line_error(run_cli("convert", str(bert_dir), str(tmp_path / "x"), "--to", "onnx"), "onnx")
