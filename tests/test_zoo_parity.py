"""EffNet-Discogs, MAEST and YAMNet replicas: mirfeat (model API, facade, pipeline, CLI) against
Essentia's wrappers on the same samples and the same graphs, on the shared recordings and on
synthetic signals. Row counts at every batch and patch boundary are covered on identity graphs
(test_effnet.py, test_maest.py); here the numbers go through real network layers."""

import json

import numpy as np
import pytest
from conftest import AUDIO_FILES, essentia_load, synthetic_signals

import mirfeat
from mirfeat.cli import main
from mirfeat.essentia import TensorflowPredict2D, TensorflowPredictEffnetDiscogs, TensorflowPredictMAEST
from mirfeat.essentia import TensorflowPredictVGGish as MirfeatVGGish
from mirfeat.families import MAEST_FAMILY
from mirfeat.patches import patch_count

ACTIVATIONS_TOL = 1e-4
EMBEDDINGS_TOL = 1e-3
EFFNET = "discogs-effnet-bs64-small-seeded-1"
EFFNET_BSDYNAMIC = "discogs-effnet-bsdynamic-small-seeded-1"
GENRE = "genre_discogs400-discogs-effnet-small-seeded-1"
DANCEABILITY = "danceability-discogs-effnet-small-seeded-1"
YAMNET = "audioset-yamnet-small-seeded-1"
YAMNET_HEAD = "danceability-audioset-yamnet-small-seeded-1"


def maest(seconds: int) -> str:
    return f"discogs-maest-{seconds}s-pw-small-seeded-2"


@pytest.fixture(scope="module")
def signals(es):
    """The shared recordings at 16 kHz and the synthetic signals, by name."""
    out = {p.name: essentia_load(es, p) for p in AUDIO_FILES}
    out.update(synthetic_signals())
    return out


@pytest.fixture(scope="module")
def long_signals(signals):
    """31 s signals for MAEST's 30 s patches: the music recording, and the synthetic ones chained."""
    synthetic = np.concatenate([s for name, s in signals.items() if "." not in name])
    return {
        "techno_loop.mp3": signals["techno_loop.mp3"],
        "synthetic": np.tile(synthetic, int(np.ceil(31 * 16000 / len(synthetic))))[: 31 * 16000],
    }


def max_diff(expected, got) -> float:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.size == 0:  # Essentia returns an empty list where there is no patch
        assert got.size == 0
        return 0.0
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max(initial=0.0))


@pytest.mark.parametrize("onnx_name", [EFFNET, EFFNET_BSDYNAMIC])
def test_effnet_equals_essentia(es, effnet_dir, signals, onnx_name):
    """bs64 (fixed batch in the ONNX) and the published bsdynamic ONNX, both outputs, every signal;
    the model API returns every patch, Essentia's standard mode its padded-batch row count."""
    pb = str(effnet_dir / f"{EFFNET}.pb")
    onnx = str(effnet_dir / f"{onnx_name}.onnx")
    model = mirfeat.load_model(onnx)
    worst = {"activations": 0.0, "embeddings": 0.0}
    for name, signal in signals.items():
        expected = {
            key: es.TensorflowPredictEffnetDiscogs(graphFilename=pb, output=output)(signal)
            for key, output in (("activations", "PartitionedCall:0"), ("embeddings", "PartitionedCall:1"))
        }
        for key, output in (("activations", "PartitionedCall:0"), ("embeddings", "PartitionedCall:1")):
            got = TensorflowPredictEffnetDiscogs(graphFilename=onnx, output=output)(signal)
            worst[key] = max(worst[key], max_diff(expected[key], got))
        result = model(signal)
        bands = model.bands(signal)
        assert len(result.activations) == len(result.embeddings) == patch_count(len(bands), 128, 62), name
        rows = len(expected["activations"])  # Essentia's count is never above the patch count
        if rows:
            np.testing.assert_allclose(result.activations[:rows], expected["activations"], atol=ACTIVATIONS_TOL)
            np.testing.assert_allclose(result.embeddings[:rows], expected["embeddings"], atol=EMBEDDINGS_TOL)
    print(f"{onnx_name}: max abs diff vs Essentia {worst}")
    assert worst["activations"] <= ACTIVATIONS_TOL and worst["embeddings"] <= EMBEDDINGS_TOL


def test_effnet_bs64_and_bsdynamic_agree(effnet_dir, signals):
    signal = signals["techno_loop.mp3"]
    fixed = mirfeat.load_model(effnet_dir / f"{EFFNET}.onnx", batch_size=16)(signal)
    dynamic = mirfeat.load_model(effnet_dir / f"{EFFNET_BSDYNAMIC}.onnx", batch_size=16)(signal)
    np.testing.assert_allclose(fixed.activations, dynamic.activations, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fixed.embeddings, dynamic.embeddings, rtol=0, atol=1e-5)
    assert dynamic.labels[0] == "Blues---Style0" and len(dynamic.labels) == 400
    assert dynamic.top_k(1)[0][0] in dynamic.labels


def test_effnet_pipeline_with_two_heads_equals_essentia(es, effnet_dir, signals):
    """One EffNet pass, both published head styles on its embeddings; the pipeline's options
    reach the embedding model it loads."""
    heads = [effnet_dir / f"{GENRE}.onnx", effnet_dir / f"{DANCEABILITY}.onnx"]
    pipe = mirfeat.Pipeline(heads, embedding_model=effnet_dir / f"{EFFNET_BSDYNAMIC}.onnx", batch_size=8)
    assert pipe.embedding_model.options.batch_size == 8
    assert mirfeat.Pipeline(heads[:1], batch_size=8).embedding_model.options.batch_size == 8  # found beside
    pb = str(effnet_dir / f"{EFFNET}.pb")
    for signal in (signals["techno_loop.mp3"], signals["dubstep.flac"]):
        out = pipe(signal)
        embeddings = es.TensorflowPredictEffnetDiscogs(graphFilename=pb, output="PartitionedCall:1")(signal)
        rows = len(embeddings)
        np.testing.assert_allclose(out.embeddings[:rows], embeddings, rtol=0, atol=EMBEDDINGS_TOL)
        for head, input_name, output in (
            (GENRE, "serving_default_model_Placeholder", "PartitionedCall:0"),
            (DANCEABILITY, "model/Placeholder", "model/Softmax"),
        ):
            graph = str(effnet_dir / f"{head}.pb")
            expected = es.TensorflowPredict2D(graphFilename=graph, input=input_name, output=output)(embeddings)
            np.testing.assert_allclose(out.heads[head].activations[:rows], expected, rtol=0, atol=ACTIVATIONS_TOL)
            ours = TensorflowPredict2D(graphFilename=str(effnet_dir / f"{head}.onnx"), input=input_name, output=output)
            np.testing.assert_allclose(ours(embeddings), expected, rtol=0, atol=ACTIVATIONS_TOL)
    assert out.heads[DANCEABILITY].labels == ["danceable", "not_danceable"]


@pytest.mark.parametrize("seconds", [5, 10, 20, 30])
def test_maest_equals_essentia(es, maest_dir, long_signals, seconds):
    """Every length, picked from the file name; the classifier, block 7 and block 12 as tensors,
    and the model API's per-patch outputs from one run."""
    pb = str(maest_dir / f"{maest(seconds)}.pb")
    onnx = maest_dir / f"{maest(seconds)}.onnx"
    model = mirfeat.load_model(onnx)
    assert (model.patch_size, model.patch_hop_size) == MAEST_FAMILY.patching(onnx.name)
    worst = {}
    for signal in long_signals.values():
        result = model(signal, outputs=["Identity", "PartitionedCall/Identity_7", "PartitionedCall/Identity_12"])
        for output in ("Identity", "PartitionedCall/Identity_7", "PartitionedCall/Identity_12"):
            expected = np.asarray(es.TensorflowPredictMAEST(graphFilename=pb, output=output)(signal))
            got = TensorflowPredictMAEST(graphFilename=str(onnx), output=output)(signal)
            worst[output] = max(worst.get(output, 0.0), max_diff(expected, got))
            # The model API keeps the graph's per-patch tensor: [patches, 400] or [patches, tokens, width].
            np.testing.assert_array_equal(got.reshape(result.outputs[output].shape), result.outputs[output])
        assert result.activations.shape == (len(result.patch_times), 400)
    print(f"{maest(seconds)}: max abs diff vs Essentia {worst}")
    assert worst["Identity"] <= ACTIVATIONS_TOL
    assert max(worst.values()) <= EMBEDDINGS_TOL


def test_yamnet_and_its_head_equal_essentia(es, yamnet_dir, signals):
    pb, onnx = str(yamnet_dir / f"{YAMNET}.pb"), str(yamnet_dir / f"{YAMNET}.onnx")
    head = mirfeat.load_model(yamnet_dir / f"{YAMNET_HEAD}.onnx")
    assert isinstance(head, mirfeat.Head) and head.embedding_model.path.name == f"{YAMNET}.onnx"
    worst = {"activations": 0.0, "embeddings": 0.0, "head": 0.0}
    for signal in signals.values():
        for key in ("activations", "embeddings"):
            expected = es.TensorflowPredictVGGish(graphFilename=pb, input="melspectrogram", output=key)(signal)
            got = MirfeatVGGish(graphFilename=onnx, input="melspectrogram", output=key)(signal)
            worst[key] = max(worst[key], max_diff(expected, got))
            result = head.embedding_model(signal)
            assert max_diff(expected, getattr(result, key)) <= EMBEDDINGS_TOL
        embeddings = es.TensorflowPredictVGGish(graphFilename=pb, input="melspectrogram", output="embeddings")(signal)
        if len(embeddings) == 0:  # Essentia's TensorflowPredict2D refuses an empty list
            assert len(head(signal).activations) == 0
            continue
        head_pb = str(yamnet_dir / f"{YAMNET_HEAD}.pb")
        expected = es.TensorflowPredict2D(graphFilename=head_pb, output="model/Softmax")(embeddings)
        worst["head"] = max(worst["head"], max_diff(expected, head(signal).activations))
    print(f"{YAMNET}: max abs diff vs Essentia {worst}")
    assert worst["activations"] <= ACTIVATIONS_TOL and worst["head"] <= ACTIVATIONS_TOL
    assert worst["embeddings"] <= EMBEDDINGS_TOL


def test_cli_tags_with_effnet_and_with_a_head(effnet_dir, signals, tmp_path, capsys):
    import soundfile

    song = tmp_path / "song.wav"
    soundfile.write(song, signals["techno_loop.mp3"], 16000)
    assert main(["tag", str(song), "--model", str(effnet_dir / f"{EFFNET_BSDYNAMIC}.onnx"), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("---Style" in line for line in lines[1:])
    assert main(["tag", str(song), "--model", str(effnet_dir / f"{DANCEABILITY}.onnx"), "--json"]) == 0
    tags = json.loads(capsys.readouterr().out)["tags"]
    assert {t["label"] for t in tags} == {"danceable", "not_danceable"}
