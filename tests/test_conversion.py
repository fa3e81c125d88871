"""The conversion step, run as users run it (`python -m conversion ...`, in its own process)."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import ESSENTIA_MODELS, MUSICNN_MODELS, ROOT, run_python

# Every test here runs the conversion (Python TensorFlow, tf2onnx, onnx) in a subprocess or reads its output.
pytestmark = pytest.mark.tensorflow


def session_outputs(path, batch):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [batch] + [d if isinstance(d, int) else 16 for d in inp.shape[1:]]
    x = np.random.default_rng(batch).uniform(0, 3, shape).astype(np.float32)
    return session.run(None, {inp.name: x})


def test_graph_without_metadata(genre_dortmund):
    """genre_dortmund has three placeholders (patches, unused labels, bool flag) and no JSON."""
    import onnx

    meta = json.loads(genre_dortmund.with_suffix(".json").read_text())
    assert [i["name"] for i in meta["schema"]["inputs"]] == ["model/Placeholder"]
    purposes = {o["name"]: o["output_purpose"] for o in meta["schema"]["outputs"]}
    assert purposes == {
        "model/Sigmoid": "predictions",
        "model/dense_2/BiasAdd": "",
        "model/dense/BiasAdd": "embeddings",
    }
    assert meta["inference"]["algorithm"] == "TensorflowPredictMusiCNN"
    assert meta["mirfeat"]["folded_training_flags"] == ["model/Placeholder_2"]
    assert max(meta["mirfeat"]["check_max_abs_diff"].values()) < 1e-4
    graph = onnx.load(str(genre_dortmund)).graph
    assert not [n for n in graph.node if n.op_type == "If"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    for batch in (1, 5):
        outputs = session_outputs(genre_dortmund, batch)
        assert [o.shape for o in outputs] == [(batch, 9), (batch, 9), (batch, 200)]


def test_metadata_outputs_are_all_kept(model_dir):
    for name in MUSICNN_MODELS:
        meta = json.loads((model_dir / f"{name}.json").read_text())
        assert list(meta["mirfeat"]["outputs"]) == [o["name"] for o in meta["schema"]["outputs"]]
        assert len(meta["classes"]) == 50
        assert meta["mirfeat"]["folded_training_flags"] == ["model/Placeholder_1"]
        assert "onnx" in meta["model_types"]
    musicnn = json.loads((model_dir / "msd-musicnn-1.json").read_text())
    # MusiCNN's (k, 1) temporal kernels slide over 96 bands: not along time only, so no conv_1d.
    assert musicnn["mirfeat"]["graph_rewrites"] == {"pool_before_batchnorm": 5, "affine_as_batchnorm": 0, "conv_1d": 0}
    sharing = musicnn["mirfeat"]["frame_sharing"]
    assert sharing["blocks"] == ["model/max_pooling2d/MaxPool:0", "model/max_pooling2d_1/MaxPool:0"]
    assert sharing["check_max_abs_diff"] < 1e-5
    assert (model_dir / sharing["frames_model"]).is_file() and (model_dir / sharing["patch_model"]).is_file()
    vgg = json.loads((model_dir / "msd-vgg-1.json").read_text())
    assert "frame_sharing" not in vgg["mirfeat"]  # 3x3 'same' convolutions over a pooled grid: nothing to share
    assert musicnn["classes"][:3] == ["rock", "pop", "alternative"]


def test_switch_merge_graph_is_folded(tmp_path):
    """vgg4's bool placeholder drives dropout and batch norm through Switch/Merge."""
    import onnx

    out = tmp_path / "vgg4.onnx"
    proc = run_python("-m", "conversion", "convert", str(ESSENTIA_MODELS / "vgg" / "vgg4.pb"), "-o", str(out))
    assert "folded to False: model/Placeholder_1" in proc.stdout
    graph = onnx.load(str(out)).graph
    assert not [n for n in graph.node if n.op_type in ("If", "Switch", "Merge")]
    assert session_outputs(out, 3)[0].shape[0] == 3


def test_classifier_head_graph(tmp_path):
    out = tmp_path / "emomusic.onnx"
    run_python(
        "-m",
        "conversion",
        "convert",
        str(ESSENTIA_MODELS / "classification_heads" / "emomusic-msd-musicnn-1.pb"),
        "-o",
        str(out),
    )
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["mirfeat"]["inputs"] == {"flatten_in_input": "flatten_in_input:0"}
    assert meta["mirfeat"]["outputs"] == {"dense_out": "dense_out:0"}
    assert session_outputs(out, 4)[0].shape == (4, 2)


def test_not_a_graph_fails_cleanly(tmp_path):
    bogus = tmp_path / "bogus.pb"
    bogus.write_text("hello")
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "conversion", "convert", str(bogus)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "bogus.pb: not a TensorFlow frozen graph" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_output_name_fails_cleanly(tmp_path):
    import subprocess
    import sys

    pb = ESSENTIA_MODELS / "musicnn" / "genre_dortmund_musicnn_msd.pb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conversion",
            "convert",
            str(pb),
            "-o",
            str(tmp_path / "x.onnx"),
            "--outputs",
            "model/Nope",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "no node named model/Nope" in proc.stderr


SCRIPT_CHECK_FAILS = """
import conversion.convert as c
c.check_against_tensorflow = lambda *a, **k: {{"model/Sigmoid": 0.5}}
try:
    c.convert({pb!r}, {out!r})
except c.ConversionError as e:
    print("raised:", e)
"""


def test_check_failure_is_loud(tmp_path):
    pb = ESSENTIA_MODELS / "musicnn" / "genre_dortmund_musicnn_msd.pb"
    proc = run_python("-c", SCRIPT_CHECK_FAILS.format(pb=str(pb), out=str(tmp_path / "x.onnx")))
    assert "raised:" in proc.stdout and "differs from TensorFlow by 0.5" in proc.stdout
    assert not (tmp_path / "x.json").exists()


SCRIPT_REWRITE = """
import numpy as np, onnxruntime as ort
from conversion.convert import convert
a = convert({pb!r}, {a!r}, optimize_graph=False, check=False)
b = convert({pb!r}, {b!r})
x = np.random.default_rng(0).uniform(0, 4, (8, 187, 96)).astype(np.float32)
ra = ort.InferenceSession({a!r}).run(None, {{"model/Placeholder:0": x}})
rb = ort.InferenceSession({b!r}).run(None, {{"model/Placeholder:0": x}})
print(b.rewrites["pool_before_batchnorm"], max(float(np.abs(u - v).max()) for u, v in zip(ra, rb)))
"""


@pytest.mark.parametrize("name", ["genre_dortmund_musicnn_msd"])
def test_pool_before_batchnorm_rewrite_keeps_outputs(tmp_path, name):
    pb = ESSENTIA_MODELS / "musicnn" / f"{name}.pb"
    proc = run_python("-c", SCRIPT_REWRITE.format(pb=str(pb), a=str(tmp_path / "a.onnx"), b=str(tmp_path / "b.onnx")))
    rewrites, diff = proc.stdout.split()[-2:]
    assert int(rewrites) == 5
    assert float(diff) < 1e-5
