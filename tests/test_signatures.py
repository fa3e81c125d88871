"""The MusiCNN signature against Essentia's TensorflowInputMusiCNN over its frame cutting."""

import numpy as np
import pytest
from conftest import AUDIO_FILES, essentia_filterbank, essentia_frames, essentia_load, synthetic_signals

from mirfeat.signatures import MUSICNN, frame_count, frame_signal, mel_filterbank

BANDS_TOL = 1e-4


def essentia_bands(es, signal: np.ndarray) -> np.ndarray:
    frontend = es.TensorflowInputMusiCNN()
    frames = essentia_frames(es, signal, 512, 256)
    return np.array([frontend(frame) for frame in frames], dtype=np.float32).reshape(-1, 96)


def assert_bands_match(es, signal):
    expected = essentia_bands(es, signal)
    got = MUSICNN.compute(signal)
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    diff = np.abs(got - expected).max(initial=0.0)
    assert diff <= BANDS_TOL, f"max abs diff {diff:.3g}"
    return diff


@pytest.mark.parametrize("path", AUDIO_FILES, ids=lambda p: p.name)
def test_bands_match_essentia_on_recordings(es, path):
    assert_bands_match(es, essentia_load(es, path))


@pytest.mark.parametrize("name", sorted(synthetic_signals()))
def test_bands_match_essentia_on_synthetic_signals(es, name):
    assert_bands_match(es, synthetic_signals()[name])


def test_filterbank_equals_essentia_melbands(es):
    expected = essentia_filterbank(
        es, 96, 0, 8000, warpingFormula="slaneyMel", weighting="linear", normalize="unit_tri"
    )
    assert np.abs(mel_filterbank(16000, 512, 96, 0, 8000) - expected).max() <= 1e-7


@pytest.mark.parametrize("n", [1, 255, 256, 257, 511, 512, 513, 16000, 16001, 48000, 48256])
def test_frame_count_equals_essentia(es, n):
    signal = np.ones(n, dtype=np.float32)
    expected = np.array(list(essentia_frames(es, signal, 512, 256)))
    assert frame_count(n, 256) == len(expected)
    np.testing.assert_array_equal(frame_signal(signal, 512, 256), expected)


def test_empty_signal_has_no_frames():
    assert MUSICNN.compute(np.zeros(0, dtype=np.float32)).shape == (0, 96)


def test_silence_gives_zero_bands():
    # log10(1 + 1e4 * 0) = 0; Essentia's -100 dB noise for silent frames rounds to the same.
    assert np.abs(MUSICNN.compute(np.zeros(16000, dtype=np.float32))).max() < 1e-5
