"""Signals that open in silence, framed as the wrappers' streaming FrameCutter frames them.

Essentia's FrameCutter (silentFrames="noise") rebuilds a silent frame from a buffer that already
holds its left zero padding, so a silent frame among the first ones carries its samples shifted
right by that padding; every silent frame also gets -100 dB noise. The standard-mode
FrameGenerator does neither, so these tests compare with the wrappers themselves, on identity
graphs that return exactly the patches they feed.
"""

import numpy as np
import pytest
from conftest import AUDIO_DIR, essentia_load, run_python

from mirfeat.essentia import (
    TensorflowPredictEffnetDiscogs,
    TensorflowPredictMAEST,
    TensorflowPredictMusiCNN,
    TensorflowPredictTempoCNN,
    TensorflowPredictVGGish,
)

BANDS_TOL = 1e-4
# VGGish's ln(x + 0.01) magnifies Essentia's float32 FFT noise in near-empty bands (see
# test_vggish_heads.py): there 1e-3, and 1e-4 in bands at least e^2 above the ln(0.01) floor.
VGGISH_NEAR_FLOOR_TOL = 1e-3
SILENT_FRAMES = [0, 1, 2, 3, 5, 8]


def opening_in_silence(n_silent_frames: int, hop: int, rate: int, level: float, seconds: float = 13.0):
    """n frames' worth of near-silence (`level`, below -100 dB when < 1e-5), then noise and a tone."""
    rng = np.random.default_rng(n_silent_frames)
    quiet = level * rng.standard_normal(n_silent_frames * hop + 5)
    t = np.arange(int(seconds * rate)) / rate
    sound = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.concatenate([quiet, sound]).astype(np.float32)


def wrapper_cases(identity_pb, identity_vggish_pb, identity_effnet, identity_maest, identity_tempocnn):
    """(name, Essentia's wrapper name, mirfeat's class, .pb, hop, rate, extra parameters)."""
    musicnn_out = {"output": "model/Identity"}
    small = {"batchSize": 2}
    return [
        ("musicnn", "TensorflowPredictMusiCNN", TensorflowPredictMusiCNN, identity_pb, 256, 16000, musicnn_out),
        ("vggish", "TensorflowPredictVGGish", TensorflowPredictVGGish, identity_vggish_pb, 160, 16000, musicnn_out),
        ("effnet", "TensorflowPredictEffnetDiscogs", TensorflowPredictEffnetDiscogs, identity_effnet, 256, 16000, {}),
        ("maest", "TensorflowPredictMAEST", TensorflowPredictMAEST, identity_maest["10s"], 256, 16000, {}),
        # Batches of 2: Essentia's buffers take at most 32768 rows of identity output (10240 a patch).
        ("tempocnn", "TensorflowPredictTempoCNN", TensorflowPredictTempoCNN, identity_tempocnn, 512, 11025, small),
    ]


@pytest.fixture(scope="module")
def cases(identity_pb, identity_vggish_pb, identity_effnet, identity_maest, identity_tempocnn):
    for pb in (identity_pb, identity_vggish_pb):  # these fixtures give the .pb alone
        if not pb.with_suffix(".onnx").is_file():
            run_python("-m", "conversion", "convert", str(pb), "-o", str(pb.with_suffix(".onnx")))
    return wrapper_cases(identity_pb, identity_vggish_pb, identity_effnet, identity_maest, identity_tempocnn)


def compare(es, case, signal) -> float:
    """Max abs difference between the wrapper's patches and mirfeat's (bands within the floor rule)."""
    name, algorithm, ours, pb, _, _, params = case
    expected = np.asarray(getattr(es, algorithm)(graphFilename=str(pb), **params)(signal), np.float32)
    got = ours(graphFilename=str(pb.with_suffix(".onnx")), **params)(signal)
    assert got.shape == expected.shape, name
    diff = np.abs(got - expected)
    if name == "vggish":
        assert diff.max(initial=0.0) <= VGGISH_NEAR_FLOOR_TOL
        diff = diff[expected > np.log(0.01) + 2.0]
    return float(diff.max(initial=0.0))


@pytest.mark.parametrize("level", [0.0, 1e-7, 3e-6])
@pytest.mark.parametrize("n_silent", SILENT_FRAMES)
def test_frames_equal_the_wrappers_after_silence(es, cases, n_silent, level):
    for case in cases:
        name, _, _, _, hop, rate, _ = case
        diff = compare(es, case, opening_in_silence(n_silent, hop, rate, level))
        # TempoCNN standardises each patch: a patch of digital silence is Essentia's random noise,
        # scaled up; here every patch holds sound, so its values are within float rounding.
        assert diff <= BANDS_TOL, f"{name}: {diff:.3g} after {n_silent} silent frames at {level}"


def test_real_recording_with_silence_prepended(es, cases):
    """A recording (resampled by Essentia) after 0.3 s of near-silence, for every wrapper."""
    for case in cases:
        name, _, _, _, _, rate, _ = case
        audio = essentia_load(es, AUDIO_DIR / "techno_loop.mp3", rate)
        quiet = 1e-6 * np.random.default_rng(0).standard_normal(int(0.3 * rate)).astype(np.float32)
        diff = compare(es, case, np.concatenate([quiet, audio]))
        assert diff <= BANDS_TOL, f"{name}: {diff:.3g}"


@pytest.mark.parametrize("quiet", [3e-6, 8e-6])
def test_full_size_vggish_after_silence_equals_essentia(es, vggish_dir, quiet):
    """A full-size VGGish-architecture graph (seeded weights, Essentia's audioset-vggish-3 names):
    after 0.4 s of noise below -100 dB the first patch differed from Essentia's by 2.4e-3 (at 3e-6)
    and 6.6e-3 (at 8e-6) without the streaming FrameCutter's rule; with it, embeddings within 1e-3
    and the two-class classifier's activations within 1e-4."""
    worst = {"embeddings": 0.0, "activations": 0.0}
    for path in (AUDIO_DIR / "techno_loop.mp3", AUDIO_DIR / "359628__mtg__sax-tenor-d-minor.wav"):
        audio = essentia_load(es, path)
        lead = quiet * np.random.default_rng(1).standard_normal(6400).astype(np.float32)
        signal = np.concatenate([lead, audio])
        for pb, output, key in (
            (vggish_dir / "vggish-seeded-1.pb", "model/vggish/embeddings", "embeddings"),
            (vggish_dir / "twoclass-vggish-seeded-1.pb", "model/Softmax", "activations"),
        ):
            expected = es.TensorflowPredictVGGish(graphFilename=str(pb), output=output)(signal)
            got = TensorflowPredictVGGish(graphFilename=str(pb.with_suffix(".onnx")), output=output)(signal)
            assert got.shape == expected.shape
            worst[key] = max(worst[key], float(np.abs(got - expected).max()))
    print(f"silence level {quiet}: max abs diff vs Essentia {worst}")
    assert worst["embeddings"] <= 1e-3
    assert worst["activations"] <= 1e-4
