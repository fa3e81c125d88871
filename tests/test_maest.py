"""MAEST: normalised MusiCNN bands, the patch size Essentia picks from the file name, tensor output
and the too-short rule, against TensorflowPredictMAEST on an identity graph."""

import numpy as np
import pytest

from mirfeat.essentia import TensorflowPredictMAEST
from mirfeat.families import MAEST_FAMILY

# (patch size, hop) by file-name marker, as Essentia's wrapper sets them.
PATCHING = {"30s": (1876, 1875), "20s": (1256, 1250), "10s": (626, 625), "5s": (316, 313)}
TOL = 1e-4


def lengths(size: int, hop: int) -> list[int]:
    """Signals one sample short of / exactly at / past one and two patches (frames = ceil(N/256) + 1)."""
    one = 256 * (size - 1)
    two = 256 * (size + hop - 1)
    return [one - 1, one, one + 1, two - 256, two, two + 1]


@pytest.mark.parametrize("length", list(PATCHING))
@pytest.mark.parametrize("mode", ["discard", "repeat"])
def test_tensor_equals_essentia(es, identity_maest, length, mode):
    size, hop = PATCHING[length]
    pb = identity_maest[length]
    assert MAEST_FAMILY.patching(pb.name) == (size, hop)
    for n in lengths(size, hop):
        signal = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        ours = TensorflowPredictMAEST(graphFilename=str(pb.with_suffix(".onnx")), lastPatchMode=mode)
        try:
            expected = np.asarray(es.TensorflowPredictMAEST(graphFilename=str(pb), lastPatchMode=mode)(signal))
        except RuntimeError as exc:
            assert "input signal is too short" in str(exc)
            with pytest.raises(ValueError, match="input signal is too short"):
                ours(signal)
            continue
        got = ours(signal)
        assert got.shape == expected.shape, (length, mode, n)
        assert got.shape[1:] == (1, size, 96)
        assert np.abs(got - expected).max() <= TOL, (length, mode, n)


def test_file_name_overrides_the_users_patch_size(es, identity_maest):
    """Essentia's override fires even over values the user set."""
    pb = identity_maest["10s"]
    signal = (0.3 * np.random.default_rng(3).standard_normal(16000 * 12)).astype(np.float32)
    params = {"patchSize": 316, "patchHopSize": 100}
    expected = np.asarray(es.TensorflowPredictMAEST(graphFilename=str(pb), **params)(signal))
    ours = TensorflowPredictMAEST(graphFilename=str(pb.with_suffix(".onnx")), **params)
    assert (ours.patchSize, ours.patchHopSize) == (626, 625)
    got = ours(signal)
    assert got.shape == expected.shape == (1, 1, 626, 96)
    assert np.abs(got - expected).max() <= TOL


def test_without_a_marker_the_users_values_hold(es, identity_maest, tmp_path):
    pb = identity_maest["30s"]
    signal = (0.3 * np.random.default_rng(4).standard_normal(16000 * 8)).astype(np.float32)
    params = {"patchSize": 316, "patchHopSize": 200, "lastPatchMode": "repeat"}
    expected = np.asarray(es.TensorflowPredictMAEST(graphFilename=str(pb), **params)(signal))
    got = TensorflowPredictMAEST(graphFilename=str(pb.with_suffix(".onnx")), **params)(signal)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL


def test_empty_input_is_refused_like_essentia(identity_maest):
    with pytest.raises(ValueError, match="empty input signal"):
        TensorflowPredictMAEST(graphFilename=str(identity_maest["5s"].with_suffix(".onnx")))(np.zeros(0, np.float32))
