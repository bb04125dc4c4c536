"""``export --format onnx``: the graph reproduces the PyTorch embeddings of every family, pruned heterogeneously, on
batches it was not traced with (other sizes, other lengths, left padding), through plain onnxruntime."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from effir_surgery.arch import shape_from_config
from effir_surgery.cli import main
from effir_surgery.config import ExportConfig, PlanSettings
from effir_surgery.encode import Encoder
from effir_surgery.errors import EffirError
from effir_surgery.folder import EXPORT_FILE, ONNX_FILE, ONNX_INT8_FILE
from effir_surgery.plan import make_plan
from effir_surgery.save import save_model
from effir_surgery.surgery import apply_plan

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.integration

TEXTS = ["a", "the plant grows toward the light", "cells divide", "energy " * 12, "why is the sky blue?"]


def _pruned_folder(model, tokenizer, out):
    shape = shape_from_config(model.config)
    plan = make_plan(shape, PlanSettings(drop_mlp_layers=[1], drop_attention_layers=[2]), model_name="tiny")
    plan = plan.model_copy(update={"mlp_widths": [*plan.mlp_widths[:3], 24], "kept_neurons": {"3": list(range(24))}})
    apply_plan(model, plan)
    save_model(model, tokenizer, out, plan=plan, provenance={"source_model": "tiny"}, verify=False)
    return out


def test_the_onnx_graph_reproduces_the_encoder(tiny_model, tokenizer, tmp_path):
    from effir_surgery.export import export

    folder = _pruned_folder(tiny_model, tokenizer, tmp_path / "pruned")
    result = export(ExportConfig(model=str(folder), output=tmp_path / "onnx", quantize="int8"))
    out = tmp_path / "onnx"
    assert json.loads((out / EXPORT_FILE).read_text())["max_abs_diff"] == result.max_abs_diff < 1e-4
    assert result.int8_cosine_min is not None and -1 <= result.int8_cosine_min <= 1

    encoder = Encoder.from_pretrained(str(folder))
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    for texts in (TEXTS, TEXTS[:2], TEXTS[3:]):
        batch = encoder.tokenize(texts)  # the exported folder's tokenizer is the same files
        feed = {name: batch[name].numpy() for name in ("input_ids", "attention_mask")}
        hidden, embedding = session.run(["last_hidden_state", "sentence_embedding"], feed)
        expected = encoder.encode(texts, batch_size=len(texts)).numpy()
        np.testing.assert_allclose(embedding, expected, atol=1e-5)
        with torch.inference_mode():
            reference = encoder.model(**batch).last_hidden_state.numpy()
        mask = feed["attention_mask"].astype(bool)
        np.testing.assert_allclose(hidden[mask], reference[mask], atol=1e-4)
    quantized = ort.InferenceSession(str(out / ONNX_INT8_FILE), providers=["CPUExecutionProvider"])
    assert quantized.run(["sentence_embedding"], feed)[0].shape == expected.shape


def test_export_refuses_bad_input_at_once(tmp_path):
    from effir_surgery.export import export

    with pytest.raises(EffirError, match="is not a saved model folder"):
        export(ExportConfig(model=str(tmp_path / "nope"), output=tmp_path / "out"))
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(main, ["export", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Error:" in result.output
    assert CliRunner().invoke(main, ["export", str(tmp_path), "-o", "x", "--format", "gguf"]).exit_code == 2
