"""The conversion step, run as users run it (`python -m conversion ...`, in its own process)."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import ESSENTIA_MODELS, MUSICNN_MODELS, ROOT, run_python

# Every test here runs the conversion (Python TensorFlow, tf2onnx, onnx) in a subprocess or reads its output.
pytestmark = pytest.mark.tensorflow


# The converted graphs against TensorFlow, apart from the conversion's own check (which raises
# past this): the .pb as shipped (no flag folded: bool placeholders fed False), plain TensorFlow
# and onnxruntime, another seed and batch. argv: pairs of .pb and .onnx (its JSON beside it).
SCRIPT_TF_VS_ONNX = """
import json, sys
import numpy as np, onnxruntime as ort, tensorflow as tf

diffs = {}
for pb, path in zip(sys.argv[1::2], sys.argv[2::2]):
    names = json.loads(open(path[: -len(".onnx")] + ".json").read())["mirfeat"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(20240601)
    feeds = {
        i.name: rng.uniform(0.0, 3.0, [d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
        for i in session.get_inputs()
    }
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(open(pb, "rb").read())
    is_flag = lambda n: n.op == "Placeholder" and n.attr["dtype"].type == tf.bool.as_datatype_enum
    flags = {n.name + ":0": False for n in graph_def.node if is_flag(n)}
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    outputs = list(names["outputs"].values())
    with tf.compat.v1.Session(graph=graph) as tf_session:
        expected = tf_session.run(outputs, {**feeds, **flags})
    got = session.run(outputs, feeds)
    diffs[path] = {o: float(np.abs(e - g).max()) for o, e, g in zip(outputs, expected, got)}
print(json.dumps(diffs))
"""
TF_TOL = 1e-4  # the conversion's own limit (conversion.convert.MAX_ABS_DIFF)


def tensorflow_vs_onnx(pb, onnx_path):
    """Max abs difference per output between TensorFlow on `pb` and onnxruntime on `onnx_path`."""
    proc = run_python("-c", SCRIPT_TF_VS_ONNX, str(pb), str(onnx_path))
    return json.loads(proc.stdout.splitlines()[-1])[str(onnx_path)]


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
    # Written under temporary names and renamed into place, frame-sharing parts included.
    names = {p.name for p in genre_dortmund.parent.iterdir()}
    assert names == {f"genre_dortmund_musicnn_msd{s}" for s in (".onnx", ".json", ".frames.onnx", ".patch.onnx")}
    assert list(meta["mirfeat"]["check_max_abs_diff"]) == list(purposes)  # the check covered every output
    diffs = tensorflow_vs_onnx(ESSENTIA_MODELS / "musicnn" / "genre_dortmund_musicnn_msd.pb", genre_dortmund)
    assert len(diffs) == 3 and max(diffs.values()) < TF_TOL, diffs
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
    assert musicnn["mirfeat"]["graph_rewrites"] == {
        "pool_before_batchnorm": 5,
        "affine_as_batchnorm": 0,
        "squeeze_excitation_upsample": 0,
        "conv_1d": 0,
    }
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
for out in {outs!r}:
    try:
        c.convert({pb!r}, out)
    except c.ConversionError as e:
        print("raised:", e)
"""


def test_check_failure_is_loud(tmp_path):
    """A conversion that fails its check writes nothing: no x.json, and an earlier conversion's
    x.onnx / x.json pair beside it (stand-in bytes here) is left as it was, with no temporary file."""
    pb = ESSENTIA_MODELS / "musicnn" / "genre_dortmund_musicnn_msd.pb"
    fresh, beside_earlier = tmp_path / "fresh", tmp_path / "earlier"
    fresh.mkdir()
    beside_earlier.mkdir()
    earlier = {"x.onnx": b"an earlier, checked conversion", "x.json": b'{"mirfeat": {}}\n'}
    for name, content in earlier.items():
        (beside_earlier / name).write_bytes(content)
    outs = [str(fresh / "x.onnx"), str(beside_earlier / "x.onnx")]
    proc = run_python("-c", SCRIPT_CHECK_FAILS.format(pb=str(pb), outs=outs))
    assert proc.stdout.count("raised:") == 2 and "differs from TensorFlow by 0.5" in proc.stdout
    assert list(fresh.iterdir()) == []
    assert {p.name: p.read_bytes() for p in beside_earlier.iterdir()} == earlier


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


def _squeeze_excitation_graph(channels: int = 32, size: tuple[int, int] = (12, 10)):
    """A dynamic-batch block as tf2onnx writes EfficientNet's: Conv -> (x) GlobalAveragePool ->
    identity Reshape -> Conv -> Relu -> Conv -> Sigmoid -> identity Reshape -> x * scales."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weights(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    shape = numpy_helper.from_array(np.array([-1, channels, 1, 1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["x"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="pool"),
        helper.make_node("Reshape", ["pooled", "shape"], ["pooled_r"], name="reshape_a"),
        helper.make_node("Conv", ["pooled_r", "w1"], ["reduced"], name="se_reduce"),
        helper.make_node("Relu", ["reduced"], ["reduced_relu"], name="relu"),
        helper.make_node("Conv", ["reduced_relu", "w2"], ["expanded"], name="se_expand"),
        helper.make_node("Sigmoid", ["expanded"], ["scales"], name="sigmoid"),
        helper.make_node("Reshape", ["scales", "shape"], ["scales_r"], name="reshape_b"),
        helper.make_node("Mul", ["x", "scales_r"], ["output"], name="se_mul"),
    ]
    graph = helper.make_graph(
        nodes,
        "se",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, *size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", channels, *size])],
        [weights("w0", channels, 16, 3, 3), weights("w1", 8, channels, 1, 1), weights("w2", channels, 8, 1, 1), shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_squeeze_excitation_rewrite_is_exact():
    from conversion.optimize import optimize

    original = _squeeze_excitation_graph()
    rewritten = _squeeze_excitation_graph()
    assert optimize(rewritten) == {
        "pool_before_batchnorm": 0,
        "affine_as_batchnorm": 0,
        "squeeze_excitation_upsample": 1,
        "conv_1d": 0,
    }
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Reshape" not in ops and "Resize" in ops
    x = np.random.default_rng(1).standard_normal((3, 16, 12, 10)).astype(np.float32)

    def run(model, level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        return ort.InferenceSession(model.SerializeToString(), options).run(None, {"input": x})[0]

    basic = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # Without the blocked layout the same operations run in the same order: bit for bit.
    np.testing.assert_array_equal(run(rewritten, basic), run(original, basic))
    # With it, only the kernels' order of arithmetic differs (float32 rounding).
    everything = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    np.testing.assert_allclose(run(rewritten, everything), run(original, basic), atol=1e-5, rtol=1e-5)


def test_effnet_squeeze_excitation_rewrite_is_checked_against_tensorflow(effnet_dir):
    meta = json.loads((effnet_dir / "discogs-effnet-bs64-small-seeded-1.json").read_text())["mirfeat"]
    assert meta["graph_rewrites"]["squeeze_excitation_upsample"] > 0
    # The rewritten graph (onnxruntime's full optimisation) against TensorFlow, at the fixed batch of 64.
    name = "discogs-effnet-bs64-small-seeded-1"
    diffs = tensorflow_vs_onnx(effnet_dir / f"{name}.pb", effnet_dir / f"{name}.onnx")
    assert len(diffs) == 2 and max(diffs.values()) < TF_TOL, diffs


def _overflowing_head(path):
    """A TensorflowPredict2D head (.onnx + .json) with three outputs on [B, 8] embeddings: `fine`
    (x / 2), `overflow` (x * 1000 * 1000: inf past float16's 65504) and `cancelled` (that minus
    itself: 0 in float32, inf - inf = NaN in float16). onnxruntime's CPU provider runs most ops of
    an fp16 graph in float32 through casts it inserts; Max has a float16 kernel, so the overflowing
    value is stored as float16 there."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.array(value, np.float32), name)

    nodes = [
        helper.make_node("Mul", ["x", "half"], ["fine"]),
        helper.make_node("Mul", ["x", "thousand"], ["scaled"]),
        helper.make_node("Mul", ["scaled", "thousand"], ["big"]),
        helper.make_node("Max", ["big", "big"], ["overflow"]),
        helper.make_node("Sub", ["overflow", "overflow"], ["cancelled"]),
    ]
    names = ("fine", "overflow", "cancelled")
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 8]) for name in names]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        outputs,
        [const("half", 0.5), const("thousand", 1000.0)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    path.with_suffix(".json").write_text(
        json.dumps({"name": "head", "inference": {"algorithm": "TensorflowPredict2D", "sample_rate": 16000}})
    )
    return path


def test_fp16_check_fails_on_overflow_naming_the_outputs(tmp_path, capsys):
    """NaN and inf from an fp16 copy are a failed check (exit 1, each output named), not a pass."""
    from conversion.__main__ import main

    head = _overflowing_head(tmp_path / "head.onnx")
    assert main(["fp16", str(head)]) == 1
    out, err = capsys.readouterr()
    assert (tmp_path / "head.fp16.onnx").is_file() and "wrote" in out
    assert "fp16 output overflow differs from fp32 by inf" in err
    assert "fp16 output cancelled differs from fp32 by nan" in err
    assert "output fine" not in err
