"""From files: mirfeat's loader against Essentia's MonoLoader, and the tags they lead to."""

import numpy as np
import pytest
from conftest import AUDIO_FILES

import mirfeat
from mirfeat.essentia import MonoLoader

# FFmpeg with MonoLoader's decoder choices, libsamplerate fed as MonoLoader feeds it: the same
# sample count, and samples equal to float32 rounding (measured at most 6e-8 on these files; it
# was 1.2e-2 on the MP3 and one sample short on three of them with libsndfile). More formats, rates
# and edge cases in test_decoding.py.
LOADER_TOL = 1e-6


@pytest.mark.parametrize("rate", [16000, 11025])
@pytest.mark.parametrize("path", AUDIO_FILES, ids=lambda p: p.name)
def test_loader_matches_essentia_monoloader(es, path, rate):
    expected = es.MonoLoader(filename=str(path), sampleRate=rate)()
    got = MonoLoader(filename=str(path), sampleRate=rate)()
    assert got.dtype == np.float32 and got.ndim == 1
    diff = float(np.abs(got[: len(expected)] - expected[: len(got)]).max())
    print(f"{path.name} at {rate} Hz: {len(got)} vs {len(expected)} samples, max abs diff {diff:.2e}")
    assert len(got) == len(expected)
    assert diff <= LOADER_TOL


@pytest.mark.parametrize("path", AUDIO_FILES, ids=lambda p: p.name)
def test_top5_tags_from_file_equal_essentia(es, model_dir, path):
    audio = es.MonoLoader(filename=str(path), sampleRate=16000)()
    predict = es.TensorflowPredictMusiCNN(graphFilename=str(model_dir / "msd-musicnn-1.pb"))
    expected_mean = predict(audio).mean(axis=0)
    model = mirfeat.load_model()  # the bundled msd-musicnn-1
    result = model(path)
    expected_top = [model.labels[i] for i in np.argsort(-expected_mean)[:5]]
    assert [label for label, _ in result.top_k(5)] == expected_top
    assert np.abs(result.mean() - expected_mean).max() < 5e-3


def test_loader_resamples_arrays_and_downmixes():
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    mono = mirfeat.load_audio(stereo, 16000, input_rate=rate)
    assert abs(len(mono) - 16000) <= 1
    assert 0.49 < np.abs(mono[1000:-1000]).max() < 0.51  # 0.5 * (L + R)
    # Channels-first input gives the same.
    np.testing.assert_allclose(mirfeat.load_audio(stereo.T, 16000, input_rate=rate), mono)
