"""precision="int8": the quantized copy `python -m conversion quantize` writes, loaded by
`load_model`, the facade, `mirfeat tag` and `mirfeat run`, against the fp32 model it came from.

int8 is not held to Essentia's tolerances (fp32 is, in the parity tests): these tests state how
close the real msd-musicnn-1 weights stay (measured: max abs activation difference 0.02-0.04,
mean 0.001-0.003 per recording, top-5 tags the same on every shared recording).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import AUDIO_DIR, AUDIO_FILES

import mirfeat
from mirfeat.cli import main
from mirfeat.errors import ModelError
from mirfeat.essentia import TensorflowPredictMusiCNN
from mirfeat.model import BUNDLED_DIR, default_batch_size, int8_path
from mirfeat.runtime import RunOptions

# int8 vs fp32 on msd-musicnn-1's sigmoid activations (measured up to 0.040 max, 0.0033 mean).
MAX_ABS = 0.08
MEAN_ABS = 0.006
# The same on the calibration batches quantize() compares on, synthetic signals included: white
# noise reaches 0.12 (whole graph; 0.085 in the patch part), looser than the recordings' 0.08.
# Mean measured 0.0039, within MEAN_ABS.
REPORT_MAX_ABS = 0.16


def _quantize_module():
    """conversion.quantize, which needs onnx (the convert extra): without it, tests that quantize skip."""
    pytest.importorskip("onnx", reason="quantizing needs onnx (the convert extra)")
    import conversion.quantize

    return conversion.quantize


@pytest.fixture(scope="module")
def musicnn_int8(tmp_path_factory):
    """A copy of the bundled msd-musicnn-1 with its int8 files, calibrated on the shared recordings."""
    quantize = _quantize_module().quantize
    out = tmp_path_factory.mktemp("int8")
    for path in BUNDLED_DIR.glob("msd-musicnn-1.*"):
        shutil.copy(path, out / path.name)
    report = quantize(out / "msd-musicnn-1.onnx", AUDIO_DIR)
    return out / "msd-musicnn-1.onnx", report


def _top5(activations: np.ndarray) -> list[int]:
    return sorted(np.argsort(-activations.mean(axis=0))[:5].tolist())


def test_quantize_writes_the_int8_graphs_beside_the_model(musicnn_int8):
    path, report = musicnn_int8
    names = ["msd-musicnn-1.int8.onnx", "msd-musicnn-1.frames.int8.onnx", "msd-musicnn-1.patch.int8.onnx"]
    assert [p.name for p in report.written] == names
    assert report.patches > 0 and "techno_loop.mp3" in report.signals and "sweep" in report.signals
    # MusiCNN's three temporal filters over one channel (128x1, 64x1, 32x1) stay float32, in the
    # whole graph and in the patch part that holds them.
    assert len(_quantize_module().few_tap_convs(path)) == 3 and report.float_convs == 6
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_quantize_reports_int8_against_fp32(musicnn_int8):
    """quantize() ran each int8 graph beside its float32 graph on calibration batches: every
    difference is finite, and the predictions (whole graph and patch part) are close."""
    path, report = musicnn_int8
    meta = json.loads(path.with_suffix(".json").read_text())
    outputs = {o["output_purpose"]: o["name"] for o in meta["schema"]["outputs"]}
    onnx_name = meta["mirfeat"]["outputs"][outputs["predictions"]]
    found = {(d.graph, d.output): d for d in report.differences}
    assert {graph for graph, _ in found} == {p.name for p in report.written}
    for d in report.differences:
        assert np.isfinite(d.max_abs) and 0 <= d.mean_abs <= d.max_abs, d
    for graph in ("msd-musicnn-1.int8.onnx", "msd-musicnn-1.patch.int8.onnx"):
        predictions = found[graph, onnx_name]
        assert 0 < predictions.max_abs < REPORT_MAX_ABS and predictions.mean_abs < MEAN_ABS, predictions


def test_a_non_finite_int8_output_is_an_error_naming_the_file(tmp_path):
    """compare_with_float on a float32 graph (x + x) and a stand-in 'int8' graph that overflows
    (x * 3e38 * 3e38 = inf in float32)."""
    quantize = _quantize_module()
    from onnx import TensorProto, helper, numpy_helper, save

    def graph(path, nodes, constants):
        initializers = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in constants.items()]
        value = helper.make_tensor_value_info
        body = helper.make_graph(
            nodes, "g", [value("x", TensorProto.FLOAT, [2, 3])], [value("y", TensorProto.FLOAT, [2, 3])], initializers
        )
        save(helper.make_model(body, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    source = graph(tmp_path / "m.onnx", [helper.make_node("Add", ["x", "x"], ["y"])], {})
    big = [helper.make_node("Mul", ["x", "big"], ["h"]), helper.make_node("Mul", ["h", "big"], ["y"])]
    broken = graph(tmp_path / "broken.onnx", big, {"big": 3e38})
    feeds = [{"x": np.ones((2, 3), np.float32)}]
    same = quantize.compare_with_float(source, source, feeds)
    assert [(d.graph, d.output, d.max_abs, d.mean_abs) for d in same] == [("m.onnx", "y", 0.0, 0.0)]
    with pytest.raises(quantize.QuantizationError, match=r"m\.int8\.onnx: int8 output y is NaN or inf"):
        quantize.compare_with_float(source, broken, feeds, named=tmp_path / "m.int8.onnx")


def test_int8_is_close_to_fp32_with_the_same_top5_on_every_recording(musicnn_int8):
    path, _ = musicnn_int8
    fp32 = mirfeat.load_model(path)
    int8 = mirfeat.load_model(path, precision="int8")
    assert int8.options.precision == "int8" and int8.frame_sharing is not None
    assert int8.graph.session.path == int8_path(path)
    for audio in AUDIO_FILES:
        a, b = fp32(audio).activations, int8(audio).activations
        assert a.shape == b.shape
        diff = np.abs(a - b)
        assert diff.max() < MAX_ABS and diff.mean() < MEAN_ABS, audio.name
        assert _top5(a) == _top5(b), audio.name


def test_int8_frame_sharing_agrees_with_the_whole_int8_graph(musicnn_int8):
    path, _ = musicnn_int8
    shared = mirfeat.load_model(path, precision="int8")
    whole = mirfeat.load_model(path, options=RunOptions(precision="int8", frame_sharing=False))
    assert whole.frame_sharing is None
    a, b = shared(AUDIO_DIR / "dubstep.flac").activations, whole(AUDIO_DIR / "dubstep.flac").activations
    # Two quantized graphs with their own calibration: int8-sized differences, not float rounding.
    assert np.abs(a - b).max() < MAX_ABS


def test_facade_takes_precision(musicnn_int8):
    path, _ = musicnn_int8
    audio = mirfeat.load_model(path).load(AUDIO_DIR / "vignesh.wav")
    facade = TensorflowPredictMusiCNN(graphFilename=str(path), precision="int8")(audio)
    model = mirfeat.load_model(path, precision="int8")
    np.testing.assert_allclose(facade, model(audio).activations, atol=1e-6)
    with pytest.raises(TypeError):
        TensorflowPredictMusiCNN(str(path), None, None, "", None, None, "discard", False, None, None, "cpu", "int8")


def test_missing_int8_file_names_the_command(tmp_path):
    for path in BUNDLED_DIR.glob("msd-musicnn-1.*"):
        if ".int8." not in path.name:
            shutil.copy(path, tmp_path / path.name)
    model = tmp_path / "msd-musicnn-1.onnx"
    with pytest.raises(ModelError, match=r"python -m conversion quantize .*msd-musicnn-1\.onnx") as error:
        mirfeat.load_model(model, precision="int8")
    assert "msd-musicnn-1.int8.onnx" in str(error.value)
    with pytest.raises(ValueError, match="precision must be one of"):
        mirfeat.load_model(model, precision="int4")


def test_cli_tag_and_run_take_precision(musicnn_int8, tmp_path, capsys):
    path, _ = musicnn_int8
    audio = AUDIO_DIR / "vignesh.wav"
    assert main(["tag", str(audio), "--model", str(path), "--precision", "int8", "--json", "--top", "5"]) == 0
    tags = json.loads(capsys.readouterr().out)["tags"]
    expected = mirfeat.load_model(path, precision="int8")(audio).top_k(5)
    assert [t["label"] for t in tags] == [label for label, _ in expected]
    assert main(["run", str(audio), "-m", str(path), "-o", str(tmp_path / "out"), "--precision", "int8"]) == 0
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["parameters"]["precision"] == "int8"
    assert info["models"][0]["graph"].endswith("msd-musicnn-1.int8.onnx") and info["models"][0]["graph_sha256"]
    arrays = np.load(next((tmp_path / "out" / "arrays").glob("*.npz")))
    predictions = mirfeat.load_model(path, precision="int8")(audio).activations
    name = next(k for k in arrays.files if arrays[k].shape == predictions.shape)
    np.testing.assert_allclose(arrays[name], predictions, atol=1e-6)


def test_quantize_command_fails_cleanly_on_a_missing_directory(musicnn_int8, tmp_path, capsys):
    from conversion.__main__ import main as conversion_main

    path, _ = musicnn_int8
    assert conversion_main(["quantize", str(path), "--calibration", str(tmp_path / "nope")]) == 1
    assert "nope: no such calibration directory" in capsys.readouterr().err


def test_maest_runs_at_its_family_batch(maest_dir):
    model = mirfeat.load_model(maest_dir / "discogs-maest-5s-pw-small-seeded-2.onnx")
    assert model.batch_size == default_batch_size(model.family) == 1
    musicnn = mirfeat.load_model("msd-musicnn-1")
    assert musicnn.batch_size == 16
    assert mirfeat.load_model("msd-musicnn-1", batch_size=4).batch_size == 4


def test_the_bundled_model_ships_its_int8_copy():
    model = mirfeat.load_model(precision="int8")
    assert model.graph.session.path == BUNDLED_DIR / "msd-musicnn-1.int8.onnx" and model.frame_sharing is not None
    audio = AUDIO_DIR / "techno_loop.mp3"
    assert _top5(model(audio).activations) == _top5(mirfeat.load_model()(audio).activations)
