"""ONNX export: graph checks, parity with torch, quantized accuracy bounds, gates, TensorRT guard."""
from __future__ import annotations

import subprocess
from pathlib import Path
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from data_assets.errors import DataError
from export.config import ExportConfig
from export.models import _gates
from export_support import exported  # noqa: F401  (session fixture)


def test_onnx_graph_is_checked_uint8_nhwc_dynamic_batch(exported):
    path = exported["onnx_dir"] / exported["report"]["files"]["32x32"]["fp32"]
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [32, 32, 3]
    assert not (path.parent / (path.name + ".data")).exists()  # small model: weights inline
    from gleam_models.checkpoint import weights_fingerprint
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gleam_model_fingerprint"] == weights_fingerprint(exported["checkpoint"])
    # nothing that names this checkout (a DVC output must be the same bytes in every clone)
    for name in ("fp32", "fp16"):
        proto = onnx.load(str(exported["onnx_dir"] / exported["report"]["files"]["32x32"][name]))
        assert str(Path(__file__).resolve().parents[1]).encode() not in proto.SerializeToString(), name


def test_onnx_matches_torch_on_real_images(exported):
    fp32 = exported["report"]["parity"]["32x32"]["fp32"]
    assert fp32["cosine_min"] >= 0.9999 and fp32["max_abs_diff"] < 1e-4 and fp32["n_images"] >= 8
    assert exported["report"]["passed"]["fp32"]


def test_dynamic_batch_gives_per_image_results(exported):
    from export.quantize import ort_session

    session = ort_session(exported["onnx_dir"] / exported["report"]["files"]["32x32"]["fp32"])
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    batch = session.run(None, {"images": frames})[0]
    single = np.concatenate([session.run(None, {"images": frames[i:i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_retrieval_parity_same_r1(exported):
    r1 = exported["report"]["retrieval"]["R@1"]
    assert r1["torch"] and r1["onnx_fp32"] == r1["torch"]
    assert set(exported["report"]["retrieval"]["modalities"]) == {"uav", "street_map"}


def test_quantized_accuracy_bounds(exported):
    parity = exported["report"]["parity"]["32x32"]
    assert parity["fp16"]["cosine_min"] >= 0.999
    for variant in ("int8_cpu", "int8_trt"):
        assert parity[variant]["cosine_mean"] >= 0.95, (variant, parity[variant])
        assert parity[variant]["cosine_mean"] < parity["fp32"]["cosine_mean"]  # really quantized
    assert set(exported["report"]["speed"]["32x32"]) == {"fp32", "fp16", "int8_cpu", "int8_trt"}


def test_int8_models_hold_integer_ops(exported):
    files = exported["report"]["files"]["32x32"]
    ops_cpu = {n.op_type for n in onnx.load(str(exported["onnx_dir"] / files["int8_cpu"])).graph.node}
    ops_trt = [n for n in onnx.load(str(exported["onnx_dir"] / files["int8_trt"])).graph.node]
    assert "QLinearConv" in ops_cpu
    zero_points = [n for n in ops_trt if n.op_type == "QuantizeLinear"]
    assert zero_points  # QDQ for TensorRT
    calib = np.load(exported["onnx_dir"] / files["calibration"], allow_pickle=False)
    assert calib.dtype == np.uint8 and calib.shape[1:] == (32, 32, 3) and len(calib) >= 8


def test_runner_resizes_like_training(tmp_path):
    sys.path.insert(0, str(exported_runner_dir()))
    try:
        import localize as runner
    finally:
        sys.path.pop(0)
    from gleam_models.data import decode_resized

    rng = np.random.default_rng(0)
    path = tmp_path / "frame.jpg"
    Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)).save(path, quality=90)
    for size in ((32, 32), (128, 256)):
        np.testing.assert_array_equal(runner.read_frame(path, size), decode_resized(path, size))


def exported_runner_dir():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "export" / "runner"


def test_gates_fail_fp32_on_low_cosine_or_r1_change():
    cfg = ExportConfig()
    report = {"parity": {"32x32": {"fp32": {"cosine_min": 0.99}, "int8_cpu": {"cosine_min": 0.99}}},
              "retrieval": {"R@1": {"torch": {"test/uav/query_to_satellite": 50.0},
                                    "onnx_fp32": {"test/uav/query_to_satellite": 50.0}},
                            "mean_q2s_R@1_change": {"onnx_int8_cpu": -3.0}},
              "files": {"32x32": {"fp32": "a", "int8_cpu": "b"}}, "failures": []}
    passed = _gates(report, cfg)
    assert passed == {"fp32": False, "int8_cpu": False}
    report["parity"]["32x32"]["fp32"]["cosine_min"] = 1.0
    report["retrieval"]["R@1"]["onnx_fp32"]["test/uav/query_to_satellite"] = 48.0
    report["failures"] = []
    assert not _gates(report, cfg)["fp32"] and "R@1 48.00 vs torch 50.00" in report["failures"][0]


def test_export_raises_without_checkpoint(tmp_path):
    from export.models import export_models
    from gleam_models.config import EncoderConfig

    with pytest.raises(DataError, match="no GLEAM-C model"):
        export_models(EncoderConfig(weights="none"), tmp_path / "missing.safetensors", ExportConfig(),
                      tmp_path / "m.parquet", tmp_path, tmp_path, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_export_config_validates():
    with pytest.raises(ValueError):
        ExportConfig(profiles=["satelite"])
    with pytest.raises(ValueError):
        ExportConfig(opset=16)


def test_tensorrt_builder_stops_at_import_guard(exported, tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the guard is not exercised")
    except ImportError:
        pass
    from export.tensorrt import build_engines

    files = exported["report"]["files"]["32x32"]
    result = build_engines({"fp32": exported["onnx_dir"] / files["fp32"]}, tmp_path / "engines")
    lines = capsys.readouterr().out.strip().splitlines()
    assert result["available"] is False and result["engines"] == {}
    assert len(lines) == 1 and lines[0].startswith("TensorRT not available")
    assert not (tmp_path / "engines").exists()
    script = exported["bundle"] / "build_engine.py"
    run = subprocess.run([sys.executable, "-I", str(script), "--onnx", "x.onnx", "--engine", "x.engine"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.strip().startswith("TensorRT not available")
    assert len(run.stderr.strip().splitlines()) == 1
