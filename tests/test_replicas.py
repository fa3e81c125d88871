"""Seeded replicas of EffNet-Discogs, MAEST and YAMNet (conversion/replicas.py) against Essentia.

That Essentia's own wrappers run the replica graphs (with their default input/output names and
patch sizes) is the proof that names and shapes are Essentia's. The conversion check
(TensorFlow vs onnxruntime) ran in the fixtures; here its result is read back, the ONNX files'
signatures are checked, and mirfeat's Essentia-style facades on the ONNX files are compared with
Essentia on the .pb files.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import AUDIO_DIR, essentia_load, run_python

import mirfeat.essentia as mirfeat_essentia

onnx = pytest.importorskip("onnx", reason="the convert extra (onnx) is not installed")

TOL = 1e-4
EFFNET = "discogs-effnet-bs64-small-seeded-1"
EFFNET_BSDYNAMIC = "discogs-effnet-bsdynamic-small-seeded-1"
EFFNET_HEADS = ["genre_discogs400-discogs-effnet-small-seeded-1", "danceability-discogs-effnet-small-seeded-1"]
YAMNET = "audioset-yamnet-small-seeded-1"
YAMNET_HEAD = "danceability-audioset-yamnet-small-seeded-1"
MAEST_FRAMES = {5: 316, 10: 626, 20: 1256, 30: 1876}
MAEST_WIDTH = 32


def maest(seconds: int) -> str:
    return f"discogs-maest-{seconds}s-pw-small-seeded-2"


def maest_tokens(frames: int) -> int:
    return 9 * ((frames - 16) // 10 + 1) + 2


@pytest.fixture(scope="module")
def audio(es):
    """30.7 s of music at 16 kHz."""
    return essentia_load(es, AUDIO_DIR / "techno_loop.mp3")


@pytest.fixture(scope="module")
def audio_10s(audio):
    return audio[:160000]


def metadata(directory, name):
    return json.loads((directory / f"{name}.json").read_text())


def onnx_signature(path):
    graph = onnx.load(str(path)).graph

    def dims(value):
        return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]

    return {v.name: dims(v) for v in graph.input}, {v.name: dims(v) for v in graph.output}


def all_replicas(effnet_dir, maest_dir, yamnet_dir):
    return (
        [(effnet_dir, name) for name in [EFFNET, *EFFNET_HEADS]]
        + [(maest_dir, maest(s)) for s in MAEST_FRAMES]
        + [(yamnet_dir, name) for name in (YAMNET, YAMNET_HEAD)]
    )


# --- the conversion -----------------------------------------------------------------------------


def test_every_replica_converts_within_tolerance(effnet_dir, maest_dir, yamnet_dir):
    for directory, name in all_replicas(effnet_dir, maest_dir, yamnet_dir):
        meta = metadata(directory, name)
        diffs = meta["mirfeat"]["check_max_abs_diff"]
        # Every output was checked against TensorFlow (convert() refuses one past 1e-4; the
        # replicas' outputs against Essentia are the tests below).
        assert list(diffs) == [o["name"] for o in meta["schema"]["outputs"]], name
        assert "frame_sharing" not in meta["mirfeat"], name
        assert (directory / f"{name}.pb").is_file() and (directory / f"{name}.onnx").is_file()


# One TensorFlow process: list the effnet graphs' nodes, then wrap the bs64 graph in Identity nodes
# (the larger top-level form: grappler's inliner would not skip it) and convert that.
_GRAPH_FORMS = """
import json, sys
from conversion.__main__ import main
from conversion.graph import load_graph_def

nodes = {}
for path in sys.argv[1:3]:
    g = load_graph_def(path)
    nodes[path] = [[n.name, n.op] for n in g.node] + [len(g.library.function)]
g = load_graph_def(sys.argv[1])
call = next(n for n in g.node if n.op == "PartitionedCall")
node = g.node.add(name="input_identity", op="Identity", input=["serving_default_melspectrogram"])
node.attr["T"].type = 1
call.input[:] = ["input_identity"]
for k in range(2):
    node = g.node.add(name=f"output_{k}", op="Identity", input=[f"PartitionedCall:{k}"])
    node.attr["T"].type = 1
open(sys.argv[3], "wb").write(g.SerializeToString())
print(json.dumps(nodes))
sys.exit(main(["convert", sys.argv[3], "--outputs", "PartitionedCall:1", "output_0"]))
"""


@pytest.fixture(scope="module")
def graph_forms(effnet_dir, tmp_path_factory):
    """({path: [[node, op], ..., number of library functions]}, the wrapped graph's .pb)."""
    wrapped = tmp_path_factory.mktemp("wrapped") / "wrapped.pb"
    paths = [effnet_dir / f"{EFFNET}.pb", effnet_dir / f"{EFFNET_HEADS[0]}.pb"]
    stdout = run_python("-c", _GRAPH_FORMS, *map(str, paths), str(wrapped)).stdout
    return json.loads(stdout.splitlines()[0]), wrapped


def test_effnet_files_are_frozen_tf2_signatures(effnet_dir, graph_forms):
    """Placeholder -> PartitionedCall, the network in the function library (as the real bs64 file)."""
    nodes, _ = graph_forms
    assert nodes[str(effnet_dir / f"{EFFNET}.pb")] == [
        ["serving_default_melspectrogram", "Placeholder"],
        ["PartitionedCall", "PartitionedCall"],
        1,
    ]
    assert nodes[str(effnet_dir / f"{EFFNET_HEADS[0]}.pb")] == [
        ["serving_default_model_Placeholder", "Placeholder"],
        ["PartitionedCall", "PartitionedCall"],
        1,
    ]


def test_function_call_after_other_nodes_converts(graph_forms):
    """Identity nodes around the call; the outputs keep their `PartitionedCall:k` names."""
    _, pb = graph_forms
    meta = json.loads(pb.with_suffix(".json").read_text())
    assert meta["mirfeat"]["outputs"] == {"PartitionedCall:1": "PartitionedCall:1", "output_0": "output_0:0"}
    assert sorted(meta["mirfeat"]["check_max_abs_diff"]) == sorted(meta["mirfeat"]["outputs"])  # both checked
    _, outputs = onnx_signature(pb.with_suffix(".onnx"))
    assert outputs == {"PartitionedCall:1": [64, 1280], "output_0:0": [64, 400]}


def test_effnet_bs64_keeps_its_fixed_batch(effnet_dir):
    meta = metadata(effnet_dir, EFFNET)
    assert meta["mirfeat"]["fixed_batch"] == {"serving_default_melspectrogram": 64}
    inputs, outputs = onnx_signature(effnet_dir / f"{EFFNET}.onnx")
    assert inputs == {"serving_default_melspectrogram:0": [64, 128, 96]}
    assert outputs == {"PartitionedCall:0": [64, 400], "PartitionedCall:1": [64, 1280]}
    session = ort.InferenceSession(str(effnet_dir / f"{EFFNET}.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"serving_default_melspectrogram:0": np.zeros((3, 128, 96), np.float32)})


def test_published_bsdynamic_onnx(effnet_dir):
    """Essentia's discogs-effnet-bsdynamic-1.onnx names; the same network as the bs64 replica."""
    path = effnet_dir / f"{EFFNET_BSDYNAMIC}.onnx"
    inputs, outputs = onnx_signature(path)
    assert inputs == {"melspectrogram": ["batch_size", 128, 96]}
    assert outputs == {"activations": ["batch_size", 400], "embeddings": ["batch_size", 1280]}
    meta = metadata(effnet_dir, EFFNET_BSDYNAMIC)
    assert "mirfeat" not in meta
    assert [o["name"] for o in meta["schema"]["outputs"]] == ["PartitionedCall:0", "PartitionedCall:1"]
    assert meta["schema"]["inputs"][0]["name"] == "serving_default_melspectrogram"
    assert meta["inference"] == {"sample_rate": 16000, "algorithm": "TensorflowPredictEffnetDiscogs"}
    assert len(meta["classes"]) == 400 and all("---" in c for c in meta["classes"])

    patches = np.random.default_rng(0).uniform(0, 3, (64, 128, 96)).astype(np.float32)
    dynamic = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    bs64 = ort.InferenceSession(str(effnet_dir / f"{EFFNET}.onnx"), providers=["CPUExecutionProvider"])
    expected = bs64.run(["PartitionedCall:0", "PartitionedCall:1"], {"serving_default_melspectrogram:0": patches})
    for batch in (1, 5, 64):
        got = dynamic.run(["activations", "embeddings"], {"melspectrogram": patches[:batch]})
        for g, e in zip(got, expected, strict=True):
            assert np.abs(g - e[:batch]).max() < 1e-5


def test_maest_onnx_has_a_dynamic_batch(maest_dir):
    for seconds, frames in MAEST_FRAMES.items():
        tokens = maest_tokens(frames)
        inputs, outputs = onnx_signature(maest_dir / f"{maest(seconds)}.onnx")
        ((input_shape),) = inputs.values()
        assert isinstance(input_shape[0], str) and input_shape[1:] == [frames, 96]
        assert [shape[1:] for shape in outputs.values()] == [[400], [tokens, MAEST_WIDTH], [tokens, MAEST_WIDTH]]
        meta = metadata(maest_dir, maest(seconds))
        assert meta["inference"]["algorithm"] == "TensorflowPredictMAEST"
        assert {o["name"]: o["output_purpose"] for o in meta["schema"]["outputs"]} == {
            "Identity": "predictions",
            "PartitionedCall/Identity_7": "embeddings",
            "PartitionedCall/Identity_12": "",
        }


def test_heads_metadata(effnet_dir, yamnet_dir):
    genre, danceability = (metadata(effnet_dir, name) for name in EFFNET_HEADS)
    effnet_model = {"algorithm": "TensorflowPredictEffnetDiscogs", "model_name": EFFNET, "link": f"{EFFNET}.pb"}
    assert genre["inference"] == {
        "sample_rate": 16000,
        "algorithm": "TensorflowPredict2D",
        "embedding_model": effnet_model,
    }
    assert genre["schema"]["inputs"] == [
        {"name": "serving_default_model_Placeholder", "type": "float", "shape": ["batch_size", 1280]}
    ]
    assert danceability["inference"]["embedding_model"] == effnet_model
    assert [o["name"] for o in danceability["schema"]["outputs"]] == ["model/Softmax", "model/dense/BiasAdd"]
    yamnet_head = metadata(yamnet_dir, YAMNET_HEAD)
    assert yamnet_head["inference"]["embedding_model"]["model_name"] == YAMNET
    assert yamnet_head["inference"]["embedding_model"]["algorithm"] == "TensorflowPredictVGGish"
    assert yamnet_head["schema"]["inputs"][0]["shape"] == [1024]


# --- Essentia runs the replicas -----------------------------------------------------------------


def test_essentia_effnet_discogs(es, effnet_dir, audio_10s):
    pb = str(effnet_dir / f"{EFFNET}.pb")
    embeddings = es.TensorflowPredictEffnetDiscogs(graphFilename=pb, output="PartitionedCall:1")(audio_10s)
    activations = es.TensorflowPredictEffnetDiscogs(graphFilename=pb, output="PartitionedCall:0")(audio_10s)
    # 626 frames; Essentia's padding estimate gives 1 + (625 - 128) // 62 = 9 patches
    assert embeddings.shape == (9, 1280)
    assert activations.shape == (9, 400)
    assert ((activations > 0) & (activations < 1)).all()


@pytest.mark.parametrize("seconds", sorted(MAEST_FRAMES))
def test_essentia_maest_picks_the_patch_size_from_the_file_name(es, maest_dir, audio, seconds):
    frames = MAEST_FRAMES[seconds]
    pb = str(maest_dir / f"{maest(seconds)}.pb")
    # (frames - 1) * 256 samples give `frames` frames: a 5 s (20 s) model needs 5.02 s (20.06 s).
    signal = audio[: (frames - 1) * 256]
    layer = es.TensorflowPredictMAEST(graphFilename=pb, output="PartitionedCall/Identity_7")(signal)
    assert np.asarray(layer).shape == (1, 1, maest_tokens(frames), MAEST_WIDTH)
    if seconds == 10:
        signal = audio[: 1875 * 256]  # 1876 frames: 3 patches of 626 frames, hop 625
        probabilities = np.asarray(es.TensorflowPredictMAEST(graphFilename=pb)(signal))  # output Identity
        assert probabilities.shape == (3, 1, 1, 400)
        layer = es.TensorflowPredictMAEST(graphFilename=pb, output="PartitionedCall/Identity_12")(signal)
        assert np.asarray(layer).shape == (3, 1, maest_tokens(frames), MAEST_WIDTH)


def test_essentia_yamnet(es, yamnet_dir, audio_10s):
    pb = str(yamnet_dir / f"{YAMNET}.pb")
    vggish = es.TensorflowPredictVGGish
    embeddings = vggish(graphFilename=pb, input="melspectrogram", output="embeddings")(audio_10s)
    activations = vggish(graphFilename=pb, input="melspectrogram", output="activations")(audio_10s)
    assert embeddings.shape == (10, 1024)  # 1001 frames -> 1 + (1001 - 96) // 93 patches
    assert activations.shape == (10, 521)


def test_essentia_heads(es, effnet_dir, yamnet_dir, audio_10s):
    effnet = es.TensorflowPredictEffnetDiscogs(
        graphFilename=str(effnet_dir / f"{EFFNET}.pb"), output="PartitionedCall:1"
    )
    embeddings = effnet(audio_10s)
    genre = es.TensorflowPredict2D(
        graphFilename=str(effnet_dir / f"{EFFNET_HEADS[0]}.pb"),
        input="serving_default_model_Placeholder",
        output="PartitionedCall:0",
    )(embeddings)
    assert genre.shape == (9, 400)
    danceability = es.TensorflowPredict2D(
        graphFilename=str(effnet_dir / f"{EFFNET_HEADS[1]}.pb"), output="model/Softmax"
    )
    assert np.allclose(danceability(embeddings).sum(axis=1), 1, atol=1e-5)
    yamnet = es.TensorflowPredictVGGish(
        graphFilename=str(yamnet_dir / f"{YAMNET}.pb"), input="melspectrogram", output="embeddings"
    )
    head = es.TensorflowPredict2D(graphFilename=str(yamnet_dir / f"{YAMNET_HEAD}.pb"), output="model/Softmax")
    assert head(yamnet(audio_10s)).shape == (10, 2)


# --- mirfeat's facades on the ONNX files give what Essentia gives on the .pb files ---------------


def assert_close(expected, got, tol=TOL):
    expected, got = np.asarray(expected), np.asarray(got)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= tol


@pytest.mark.parametrize("onnx_name", [EFFNET, EFFNET_BSDYNAMIC])
@pytest.mark.parametrize("output", ["PartitionedCall:0", "PartitionedCall:1"])
def test_mirfeat_effnet_equals_essentia(es, effnet_dir, audio_10s, onnx_name, output):
    expected = es.TensorflowPredictEffnetDiscogs(graphFilename=str(effnet_dir / f"{EFFNET}.pb"), output=output)
    got = mirfeat_essentia.TensorflowPredictEffnetDiscogs(
        graphFilename=str(effnet_dir / f"{onnx_name}.onnx"), output=output
    )
    assert_close(expected(audio_10s), got(audio_10s))


@pytest.mark.parametrize("output", ["Identity", "PartitionedCall/Identity_7"])
def test_mirfeat_maest_equals_essentia(es, maest_dir, audio, output):
    signal = audio[: 20 * 16000]
    expected = es.TensorflowPredictMAEST(graphFilename=str(maest_dir / f"{maest(10)}.pb"), output=output)(signal)
    got = mirfeat_essentia.TensorflowPredictMAEST(graphFilename=str(maest_dir / f"{maest(10)}.onnx"), output=output)
    assert_close(expected, got(signal))


def test_mirfeat_yamnet_and_head_equal_essentia(es, yamnet_dir, audio_10s):
    kwargs = {"input": "melspectrogram", "output": "embeddings"}
    expected = es.TensorflowPredictVGGish(graphFilename=str(yamnet_dir / f"{YAMNET}.pb"), **kwargs)(audio_10s)
    got = mirfeat_essentia.TensorflowPredictVGGish(graphFilename=str(yamnet_dir / f"{YAMNET}.onnx"), **kwargs)(
        audio_10s
    )
    assert_close(expected, got)
    head = {"output": "model/Softmax"}
    expected = es.TensorflowPredict2D(graphFilename=str(yamnet_dir / f"{YAMNET_HEAD}.pb"), **head)(expected)
    got = mirfeat_essentia.TensorflowPredict2D(graphFilename=str(yamnet_dir / f"{YAMNET_HEAD}.onnx"), **head)(got)
    assert_close(expected, got)
