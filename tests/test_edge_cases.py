"""Short, empty, silent, corrupt and non-audio inputs; wrong model files."""

import numpy as np
import pytest
from conftest import write_wav

import mirfeat
from mirfeat.errors import AudioError
from mirfeat.essentia import MonoLoader, TensorflowPredictMusiCNN


@pytest.fixture(scope="module")
def model():
    return mirfeat.load_model()


@pytest.mark.parametrize("mode, rows", [("discard", 0), ("repeat", 1)])
def test_shorter_than_one_patch_is_essentia_like(es, model_dir, mode, rows):
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)  # 1 s < 3 s patch
    got = TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.onnx"), lastPatchMode=mode)(audio)
    assert got.shape == (rows, 50)
    if rows:
        expected = es.TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.pb"), lastPatchMode=mode)(
            audio
        )
        assert np.abs(got - expected).max() <= 1e-4


def test_short_clip_through_model_api(model):
    result = model(np.zeros(8000, np.float32))
    assert result.activations.shape == (0, 50)
    assert result.embeddings.shape == (0, 200)
    assert result.top_k(5) == []
    assert np.isnan(result.mean()).all()
    assert model(np.zeros(8000, np.float32), last_patch_mode="repeat").activations.shape == (1, 50)


def test_silence_matches_essentia(es, model_dir):
    silence = np.zeros(5 * 16000, np.float32)
    expected = es.TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.pb"))(silence)
    got = TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.onnx"))(silence)
    assert got.shape == expected.shape == (2, 50)
    assert np.abs(got - expected).max() <= 1e-4


def test_empty_input(model, tmp_path):
    with pytest.raises(ValueError, match="empty input signal"):
        TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1")(np.zeros(0, np.float32))
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(mirfeat.AudioError, match="empty.wav: no audio samples"):
        model(empty)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00\x00\x00WAVEfmt garbage", b"not audio at all\n" * 100])
def test_corrupt_or_non_audio_file_names_the_file(model, tmp_path, content):
    path = tmp_path / "broken.mp3"
    path.write_bytes(content)
    with pytest.raises(mirfeat.AudioError, match="broken.mp3: cannot decode"):
        model(path)
    with pytest.raises(mirfeat.AudioError, match="broken.mp3"):
        MonoLoader(filename=str(path), sampleRate=16000)()


def test_missing_file(model, tmp_path):
    with pytest.raises(mirfeat.AudioError, match="nope.wav: no such file"):
        model(tmp_path / "nope.wav")


def test_nan_samples_are_rejected(model):
    audio = np.zeros(48000, np.float32)
    audio[100] = np.nan
    with pytest.raises(mirfeat.AudioError, match="NaN"):
        model(audio)


def test_wrong_model_files(tmp_path):
    with pytest.raises(ValueError, match="convert it once"):
        pb = tmp_path / "model.pb"
        pb.write_bytes(b"x")
        mirfeat.load_model(pb)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model")
    (tmp_path / "garbage.json").write_text('{"inference": {"algorithm": "TensorflowPredictMusiCNN"}}')
    with pytest.raises(ValueError, match="garbage.onnx: not a valid ONNX model"):
        mirfeat.load_model(garbage)
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(mirfeat.load_model().path.read_bytes())
    with pytest.raises(FileNotFoundError, match="no metadata JSON"):
        mirfeat.load_model(lonely)
    with pytest.raises(FileNotFoundError, match="not a bundled model"):
        mirfeat.load_model("no-such-model-1")
    (tmp_path / "other.onnx").write_bytes(lonely.read_bytes())
    (tmp_path / "other.json").write_text('{"inference": {"algorithm": "TensorflowPredictSomethingElse"}}')
    with pytest.raises(ValueError, match="other.json: unknown Essentia algorithm"):
        mirfeat.load_model(tmp_path / "other.onnx")


@pytest.mark.parametrize("dtype", ["int16", "int32", "uint8"])
def test_facade_refuses_integer_pcm(dtype):
    """Essentia would take int16 samples as floats of +-32768: refused, with what to do."""
    with pytest.raises(mirfeat.AudioError, match=f"not {dtype}; scale integer PCM first"):
        TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1")(np.zeros(48000, dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_facade_refuses_nan_and_inf(bad):
    audio = np.zeros(48000, np.float32)
    audio[10] = bad
    with pytest.raises(mirfeat.AudioError, match="NaN or infinite"):
        TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1")(audio)


@pytest.mark.parametrize("rate", [0, float("nan"), -16000])
def test_model_refuses_a_rate_that_is_not_one(model, rate):
    """`sample_rate=0` used to mean "no rate given": a 44.1 kHz clip was taken as 16 kHz."""
    with pytest.raises(mirfeat.AudioError, match="input_rate must be"):
        model(np.zeros(44100, np.float32), sample_rate=rate)


def test_uint8_arrays_are_re_centred(model):
    """uint8 PCM is offset binary: 128 is silence (it used to come out as +0.5 DC)."""
    silence = np.full(48000, 128, np.uint8)
    np.testing.assert_array_equal(mirfeat.load_audio(silence, 16000), 0)


def test_64_bit_integer_arrays_are_refused():
    # Python ints become int64: 16-bit values divided by 2^63 would be near-silence, not audio.
    with pytest.raises(AudioError, match=r"int64 samples are not PCM"):
        mirfeat.load_model()(np.array([1000, -1000] * 24000), sample_rate=16000)
