"""VGGish signature, TensorflowPredictVGGish / TensorflowPredict2D and the head pipeline, against Essentia."""

import json
import shutil

import numpy as np
import pytest
from conftest import (
    AUDIO_FILES,
    ESSENTIA_MODELS,
    essentia_filterbank,
    essentia_frames,
    essentia_load,
    synthetic_signals,
)

import mirfeat
from mirfeat.essentia import TensorflowPredict2D, TensorflowPredictMusiCNN, TensorflowPredictVGGish
from mirfeat.patches import make_patches, patch_count
from mirfeat.runtime import Session
from mirfeat.signatures import VGGISH, mel_filterbank

TOL = 1e-4
BANDS_MAX_NEAR_FLOOR = 1e-3
LENGTHS = [8000, 15359, 15360, 16000, 16001, 31000, 47999, 160000, 480000 + 17]


def essentia_vggish_bands(es, signal):
    frontend = es.TensorflowInputVGGish()
    cutter = essentia_frames(es, signal, 400, 160)
    return np.array([frontend(frame) for frame in cutter], dtype=np.float32).reshape(-1, 64)


@pytest.fixture(scope="module")
def signals(es):
    return {p.name: essentia_load(es, p) for p in AUDIO_FILES}


@pytest.mark.parametrize("name", [p.name for p in AUDIO_FILES] + sorted(synthetic_signals()))
def test_vggish_bands_match_essentia(es, signals, name):
    signal = signals.get(name)
    signal = synthetic_signals()[name] if signal is None else signal
    expected = essentia_vggish_bands(es, signal)
    got = VGGISH.compute(signal)
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    # ln(x + 0.01) magnifies rounding near x = 0 by 100: in near-empty bands next to a loud one,
    # Essentia's float32 FFT noise (~1e-7 of the peak) shows up as up to 6.3e-4 (full-scale chirp);
    # mirfeat computes the spectrum in float64. Everywhere else the bands agree within 1e-4.
    assert diff.max() <= BANDS_MAX_NEAR_FLOOR, f"max abs diff {diff.max():.3g}"
    loud = expected > np.log(0.01) + 2.0  # bands at least e^2 above the ln(0.01) floor
    assert diff[loud].max(initial=0.0) <= TOL


def test_vggish_filterbank_equals_essentia_melbands(es):
    expected = essentia_filterbank(
        es, 64, 125, 7500, warpingFormula="htkMel", weighting="warping", normalize="unit_max"
    )
    assert np.abs(mel_filterbank(16000, 512, 64, 125, 7500, "htkMel", "warping", "unit_max") - expected).max() == 0


@pytest.mark.parametrize("mode", ["discard", "repeat"])
@pytest.mark.parametrize("n", LENGTHS)
def test_vggish_patches_equal_essentia(es, identity_vggish_pb, n, mode):
    signal = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    rows = es.TensorflowPredictVGGish(
        graphFilename=str(identity_vggish_pb), output="model/Identity", lastPatchMode=mode
    )(signal)
    expected = np.asarray(rows, np.float32).reshape(-1, 96, 64) if len(rows) else np.zeros((0, 96, 64))
    bands = VGGISH.compute(signal)
    got = make_patches(bands, 96, 93, mode)
    assert len(got) == len(expected) == patch_count(len(bands), 96, 93, mode)
    if len(got):
        assert np.abs(got - expected).max() <= TOL


def compare_vggish(es, pb, onnx_path, output, signals):
    worst = 0.0
    for name, signal in signals.items():
        expected = es.TensorflowPredictVGGish(graphFilename=str(pb), output=output)(signal)
        got = TensorflowPredictVGGish(graphFilename=str(onnx_path), output=output)(signal)
        assert got.shape == expected.shape, name
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"{onnx_path.stem} {output}: max abs diff vs Essentia {worst:.3g}")
    assert worst <= TOL
    return worst


def test_small_vggish_matches_essentia(es, small_vggish, signals):
    for output in ("model/Sigmoid", "model/prediction"):
        compare_vggish(es, ESSENTIA_MODELS / "vggish" / "small_vggish_init.pb", small_vggish, output, signals)


def test_seeded_vggish_embeddings_match_essentia(es, vggish_dir, signals):
    compare_vggish(
        es, vggish_dir / "vggish-seeded-1.pb", vggish_dir / "vggish-seeded-1.onnx", "model/vggish/embeddings", signals
    )


def test_legacy_classifier_matches_essentia(es, vggish_dir, signals):
    compare_vggish(
        es,
        vggish_dir / "twoclass-vggish-seeded-1.pb",
        vggish_dir / "twoclass-vggish-seeded-1.onnx",
        "model/Softmax",
        signals,
    )


@pytest.mark.parametrize(
    "head, output", [("task1", "model/Softmax"), ("task1", "model/dense/BiasAdd"), ("task2", "PartitionedCall:0")]
)
def test_heads_match_essentia_tensorflowpredict2d(es, vggish_dir, signals, head, output):
    pb = vggish_dir / f"{head}-vggish-seeded-1.pb"
    input_name = json.loads(pb.with_suffix(".json").read_text())["schema"]["inputs"][0]["name"]
    for signal in signals.values():
        embeddings = es.TensorflowPredictVGGish(
            graphFilename=str(vggish_dir / "vggish-seeded-1.pb"), output="model/vggish/embeddings"
        )(signal)
        expected = es.TensorflowPredict2D(graphFilename=str(pb), input=input_name, output=output)(embeddings)
        got = TensorflowPredict2D(graphFilename=str(pb.with_suffix(".onnx")), input=input_name, output=output)(
            embeddings
        )
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOL


def test_emomusic_head_on_musicnn_embeddings_matches_essentia(es, model_dir, signals, tmp_path_factory):
    from conftest import run_python

    out = tmp_path_factory.mktemp("emomusic") / "emomusic-msd-musicnn-1.onnx"
    pb = ESSENTIA_MODELS / "classification_heads" / "emomusic-msd-musicnn-1.pb"
    run_python("-m", "conversion", "convert", str(pb), "-o", str(out))
    for signal in signals.values():
        embeddings = es.TensorflowPredictMusiCNN(
            graphFilename=str(model_dir / "msd-musicnn-1.pb"), output="model/dense/BiasAdd"
        )(signal)
        expected = es.TensorflowPredict2D(graphFilename=str(pb), input="flatten_in_input", output="dense_out")(
            embeddings
        )
        got = TensorflowPredict2D(graphFilename=str(out), input="flatten_in_input", output="dense_out")(embeddings)
        assert got.shape == expected.shape == (len(embeddings), 2)
        assert np.abs(got - expected).max() <= TOL
    # The same through mirfeat only: musicnn embeddings from the facade, then the head.
    ours = TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.onnx"), output="model/dense/BiasAdd")(
        signal
    )
    got = TensorflowPredict2D(graphFilename=str(out), input="flatten_in_input", output="dense_out")(ours)
    assert np.abs(got - expected).max() <= 1e-3


@pytest.mark.parametrize("mode, patches", [("discard", 4), ("repeat", 5)])
def test_tensorflowpredict2d_patch_size(es, patches_2d_pb, mode, patches):
    """patchSize > 1 cuts [T, D] rows into [B, T, D] patches as Essentia does: a graph that flattens
    each [4, 128] patch to one output row shows every value Essentia and mirfeat feed it."""
    rows = np.random.default_rng(0).standard_normal((10, 128)).astype(np.float32)
    params = dict(output="model/Flatten", patchSize=4, patchHopSize=2, lastPatchMode=mode)
    expected = es.TensorflowPredict2D(graphFilename=str(patches_2d_pb), **params)(rows)
    got = TensorflowPredict2D(graphFilename=str(patches_2d_pb.with_suffix(".onnx")), **params)(rows)
    assert got.shape == expected.shape == (patches, 4 * 128)
    assert np.abs(got - expected).max() <= TOL
    np.testing.assert_array_equal(got, make_patches(rows, 4, 2, mode).reshape(patches, -1))


def test_pipeline_equals_heads_run_separately(vggish_dir, signals):
    heads = [vggish_dir / "task1-vggish-seeded-1.onnx", vggish_dir / "task2-vggish-seeded-1.onnx"]
    pipe = mirfeat.Pipeline(heads)
    assert pipe.embedding_model.path == vggish_dir / "vggish-seeded-1.onnx"  # found beside the heads
    signal = signals["techno_loop.mp3"]
    out = pipe(signal)
    embeddings = TensorflowPredictVGGish(
        graphFilename=str(vggish_dir / "vggish-seeded-1.onnx"), output="model/vggish/embeddings"
    )(signal)
    np.testing.assert_allclose(out.embeddings, embeddings, rtol=0, atol=1e-6)
    for head, input_name, output in [
        ("task1", "model/Placeholder", "model/Softmax"),
        ("task2", "serving_default_model_Placeholder", "PartitionedCall:0"),
    ]:
        separate = TensorflowPredict2D(
            graphFilename=str(vggish_dir / f"{head}-vggish-seeded-1.onnx"), input=input_name, output=output
        )(embeddings)
        result = out.heads[f"{head}-vggish-seeded-1"]
        np.testing.assert_allclose(result.activations, separate, rtol=0, atol=1e-6)
        assert result.labels == [f"{head}_{i}" for i in range(separate.shape[1])]
        assert len(result.patch_times) == len(separate)
    assert set(out.means()["task2-vggish-seeded-1"]) == {"task2_0", "task2_1", "task2_2", "task2_3"}


def test_head_loaded_alone_finds_its_embedding_model(vggish_dir, signals):
    a = mirfeat.load_model(vggish_dir / "task1-vggish-seeded-1.onnx", batch_size=8)
    assert isinstance(a, mirfeat.Head)
    assert a.embedding_model.path == vggish_dir / "vggish-seeded-1.onnx"  # found beside the head
    assert a.embedding_model.options.batch_size == 8  # loaded with the head's options
    # No hidden cache: a head shares a model only when given one.
    b = mirfeat.load_model(vggish_dir / "task2-vggish-seeded-1.onnx", embedding_model=a.embedding_model)
    assert b.embedding_model is a.embedding_model
    result = a(signals["vignesh.wav"])
    assert result.activations.shape == (len(result.patch_times), 2)
    assert result.embeddings.shape == (len(result.patch_times), 128)
    # The legacy end-to-end classifier is the same body and head in one graph.
    legacy = mirfeat.load_model(vggish_dir / "twoclass-vggish-seeded-1.onnx")(signals["vignesh.wav"])
    np.testing.assert_allclose(legacy.activations, result.activations, rtol=0, atol=1e-5)


def test_pipeline_run_files_survives_a_bad_file(vggish_dir, tmp_path, capsys):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"\x00" * 100)
    pipe = mirfeat.Pipeline([vggish_dir / "task1-vggish-seeded-1.onnx"])
    files = [AUDIO_FILES[0], bad, AUDIO_FILES[1]]
    results = list(pipe.run_files(files, progress=True))
    assert isinstance(results[1], mirfeat.FileFailure) and "bad.flac" in results[1].error
    assert all(isinstance(r, mirfeat.PipelineResult) for r in (results[0], results[2]))
    assert "/3 [" in capsys.readouterr().err  # a progress bar over the 3 files
    # One path on its own is one file, not a string of characters.
    single = list(pipe.run_files(str(AUDIO_FILES[0])))
    assert len(single) == 1 and isinstance(single[0], mirfeat.PipelineResult)


def test_pipeline_rejects_heads_of_another_embedding(vggish_dir):
    with pytest.raises(ValueError, match="reads vggish-seeded-1 embeddings"):
        mirfeat.Pipeline([vggish_dir / "task1-vggish-seeded-1.onnx"], embedding_model="msd-musicnn-1")


def test_pipeline_rejects_heads_of_another_width(vggish_dir, tmp_path):
    # A head whose metadata names msd-musicnn-1 but reads VGGish's 128-wide embeddings (MusiCNN's: 200).
    for suffix in (".onnx", ".json"):
        shutil.copy(vggish_dir / f"task1-vggish-seeded-1{suffix}", tmp_path / f"task1-misnamed{suffix}")
    meta = json.loads((tmp_path / "task1-misnamed.json").read_text())
    meta.setdefault("inference", {})["embedding_model"] = {"model_name": "msd-musicnn-1"}
    (tmp_path / "task1-misnamed.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"task1-misnamed\.onnx: .* reads 128-wide embeddings; msd-musicnn-1\.onnx's"):
        mirfeat.Pipeline([tmp_path / "task1-misnamed.onnx"], embedding_model="msd-musicnn-1")


def test_published_onnx_names_load_without_conversion(vggish_dir, signals, tmp_path):
    """An .onnx with its own tensor names (as Essentia publishes: `melspectrogram` -> `activations` /
    `embeddings`) and the TF names in its JSON loads as is."""
    import onnx  # the convert extra, like the fixture's graphs

    model = onnx.load(str(vggish_dir / "twoclass-vggish-seeded-1.onnx"))
    renames = {
        "model/Placeholder:0": "melspectrogram",
        "model/Softmax:0": "activations",
        "model/vggish/embeddings:0": "embeddings",
    }
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames[value.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    published = tmp_path / "published.onnx"
    onnx.save(model, str(published))
    meta = json.loads((vggish_dir / "twoclass-vggish-seeded-1.json").read_text())
    del meta["mirfeat"]
    published.with_suffix(".json").write_text(json.dumps(meta))

    ours = mirfeat.load_model(published)(signals["dubstep.flac"])
    reference = mirfeat.load_model(vggish_dir / "twoclass-vggish-seeded-1.onnx")(signals["dubstep.flac"])
    np.testing.assert_array_equal(ours.activations, reference.activations)
    np.testing.assert_array_equal(ours.embeddings, reference.embeddings)


def test_identity2x2_onnx_with_json(tmp_path):
    """The tiny real ONNX file from Essentia's test models: two inputs, two outputs."""
    path = tmp_path / "identity2x2.onnx"
    path.write_bytes((ESSENTIA_MODELS / "identity" / "identity2x2.onnx").read_bytes())
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "name": "identity2x2",
                "classes": ["a", "b", "c"],
                "schema": {
                    "inputs": [{"name": "input1:0"}, {"name": "input2:0"}],
                    "outputs": [{"name": "output1:0", "output_purpose": "predictions"}, {"name": "output2:0"}],
                },
                "inference": {"algorithm": "TensorflowPredict2D", "sample_rate": 16000},
            }
        )
    )
    session = Session(path)
    meta = mirfeat.ModelMetadata.read(path.with_suffix(".json"))
    x1, x2 = np.eye(3, dtype=np.float32)[:2], np.ones((4, 3), np.float32)
    out = session.run_feeds(dict(zip(meta.inputs, (x1, x2), strict=True)), [o.name for o in meta.outputs])
    np.testing.assert_array_equal(out["output1:0"], x1)
    np.testing.assert_array_equal(out["output2:0"], x2)
