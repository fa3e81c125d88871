"""Model outputs against Essentia's TensorflowPredictMusiCNN running the same frozen graph."""

import json

import numpy as np
import pytest
from conftest import AUDIO_DIR, AUDIO_FILES, ESSENTIA_MODELS, MUSICNN_MODELS, essentia_load

import mirfeat
from mirfeat.essentia import TensorflowPredictMusiCNN

ACTIVATIONS_TOL = 1e-4
EMBEDDINGS_TOL = 1e-3

# Essentia's own regression value: vignesh.wav, genre_dortmund, first patch.
DORTMUND_VIGNESH_FIRST_PATCH = [
    0.00893995,
    0.650628,
    0.0017924,
    0.10297492,
    0.15139213,
    0.13975027,
    0.07960042,
    0.01067388,
    0.04935676,
]


@pytest.fixture(scope="module")
def signals(es):
    return {p.name: essentia_load(es, p) for p in AUDIO_FILES}


def schema_outputs(onnx_path):
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    by_purpose = {o["output_purpose"]: o["name"] for o in meta["schema"]["outputs"]}
    return by_purpose["predictions"], by_purpose["embeddings"]


def check_model(es, pb_path, onnx_path, signals):
    predictions, embeddings = schema_outputs(onnx_path)
    model = mirfeat.load_model(onnx_path)
    worst = {"activations": 0.0, "embeddings": 0.0}
    for name, signal in signals.items():
        for output, key, tol in (
            (predictions, "activations", ACTIVATIONS_TOL),
            (embeddings, "embeddings", EMBEDDINGS_TOL),
        ):
            expected = es.TensorflowPredictMusiCNN(graphFilename=str(pb_path), output=output)(signal)
            facade = TensorflowPredictMusiCNN(graphFilename=str(onnx_path), output=output)(signal)
            assert facade.shape == expected.shape, name
            diff = float(np.abs(facade - expected).max())
            assert diff <= tol, f"{name} {output}: max abs diff {diff:.3g} > {tol}"
            worst[key] = max(worst[key], diff)
        # The model API gives both from one run, equal to the facade's.
        result = model(signal)
        np.testing.assert_allclose(
            result.activations,
            es.TensorflowPredictMusiCNN(graphFilename=str(pb_path), output=predictions)(signal),
            rtol=0,
            atol=ACTIVATIONS_TOL,
        )
        assert result.embeddings.shape[0] == result.activations.shape[0] == len(result.patch_times)
    print(f"{onnx_path.stem}: max abs diff vs Essentia {worst}")
    return worst


@pytest.mark.parametrize("name", MUSICNN_MODELS)
def test_musicnn_wheel_models_match_essentia(es, model_dir, signals, name):
    check_model(es, model_dir / f"{name}.pb", model_dir / f"{name}.onnx", signals)


def test_genre_dortmund_matches_essentia(es, genre_dortmund, signals):
    check_model(es, ESSENTIA_MODELS / "musicnn" / "genre_dortmund_musicnn_msd.pb", genre_dortmund, signals)


def test_genre_dortmund_regression_value(genre_dortmund):
    from mirfeat.essentia import MonoLoader

    audio = MonoLoader(filename=str(AUDIO_DIR / "vignesh.wav"), sampleRate=16000)()
    first = TensorflowPredictMusiCNN(graphFilename=str(genre_dortmund))(audio)[0]
    # Essentia's own regression test holds these to 1e-5; mirfeat is 8.6e-7 from them.
    np.testing.assert_allclose(first, DORTMUND_VIGNESH_FIRST_PATCH, rtol=0, atol=1e-5)


def test_bundled_model_matches_essentia_on_fresh_freeze(es, model_dir, signals):
    """The ONNX file shipped in the package gives what Essentia gives on the frozen checkpoint."""
    bundled = mirfeat.load_model().path
    assert bundled.name == "msd-musicnn-1.onnx"
    check_model(es, model_dir / "msd-musicnn-1.pb", bundled, signals)


@pytest.mark.parametrize("batch_size", [1, 7, -1])
def test_batch_size_does_not_change_results(model_dir, signals, batch_size):
    signal = signals["techno_loop.mp3"]
    reference = mirfeat.load_model(model_dir / "msd-musicnn-1.onnx", batch_size=64)(signal)
    other = mirfeat.load_model(model_dir / "msd-musicnn-1.onnx", batch_size=batch_size)(signal)
    np.testing.assert_allclose(other.activations, reference.activations, rtol=0, atol=1e-6)
    np.testing.assert_allclose(other.embeddings, reference.embeddings, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["discard", "repeat"])
def test_repeat_mode_matches_essentia(es, model_dir, signals, mode):
    signal = signals["vignesh.wav"]
    pb, onnx = model_dir / "msd-musicnn-1.pb", model_dir / "msd-musicnn-1.onnx"
    expected = es.TensorflowPredictMusiCNN(graphFilename=str(pb), lastPatchMode=mode)(signal)
    got = TensorflowPredictMusiCNN(graphFilename=str(onnx), lastPatchMode=mode)(signal)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= ACTIVATIONS_TOL


@pytest.mark.parametrize("mode", ["discard", "repeat"])
@pytest.mark.parametrize("hop", [93, 50, 187])
def test_frame_sharing_equals_the_whole_graph(model_dir, signals, mode, hop):
    """The split graph (per-frame part once per signal) gives what the whole graph gives per patch."""
    shared = mirfeat.load_model(model_dir / "msd-musicnn-1.onnx")
    assert shared.frame_sharing is not None
    whole = mirfeat.load_model(model_dir / "msd-musicnn-1.onnx", options=mirfeat.RunOptions(frame_sharing=False))
    assert whole.frame_sharing is None
    for name in ("techno_loop.mp3", "vignesh.wav"):
        bands = shared.bands(signals[name])
        got = shared.run_patches(bands, last_patch_mode=mode, patch_hop_size=hop)
        expected = whole.run_patches(bands, last_patch_mode=mode, patch_hop_size=hop)
        for output in expected:
            assert len(got[output]) == len(expected[output])
            np.testing.assert_allclose(got[output], expected[output], rtol=0, atol=1e-5)


def test_bundled_model_ships_its_frame_sharing_split():
    model = mirfeat.load_model()
    assert model.frame_sharing is not None
    assert model.metadata.raw["mirfeat"]["frame_sharing"]["context"] == 3


def test_streaming_a_file_equals_the_whole_signal_path(tmp_path):
    """A 90 s 44.1 kHz file through the streaming path (decode, bands, patches and batches block
    by block: many blocks, batches and frame-sharing runs) equals bands of the whole decoded signal
    cut and run at once."""
    from conftest import write_wav

    music = mirfeat.load_audio(AUDIO_DIR / "techno_loop.mp3", 44100)
    path = write_wav(tmp_path / "long.wav", np.tile(music, 3), 44100)
    model = mirfeat.load_model(batch_size=16)
    streamed = model(path)
    signal = mirfeat.load_audio(path, 16000)
    everything = mirfeat.load_model(batch_size=-1).run_patches(model.bands(signal))  # one batch
    assert streamed.activations.shape == (len(everything["model/Sigmoid"]), 50)
    np.testing.assert_allclose(streamed.activations, everything["model/Sigmoid"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(streamed.embeddings, everything["model/dense/BiasAdd"], rtol=0, atol=1e-5)
