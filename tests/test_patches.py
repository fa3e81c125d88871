"""Patch counts and contents against Essentia's TensorflowPredictMusiCNN (identity graph)."""

import numpy as np
import pytest

from mirfeat.patches import make_patches, patch_count, patch_starts
from mirfeat.signatures import MUSICNN

# 0.5 s .. 60 s, including lengths that are not multiples of the 256-sample hop.
LENGTHS = [8000, 16000, 29999, 47872, 48000, 48001, 63999, 80000, 160000 + 37, 480000, 480255, 960000]


def essentia_patches(es, identity_pb, signal, mode):
    predict = es.TensorflowPredictMusiCNN(graphFilename=str(identity_pb), output="model/Identity", lastPatchMode=mode)
    rows = np.asarray(predict(signal), dtype=np.float32)
    # A 3-D output [B, 187, 96] comes back as B * 187 rows of 96.
    return rows.reshape(-1, 187, 96) if rows.size else np.zeros((0, 187, 96), np.float32)


@pytest.mark.parametrize("mode", ["discard", "repeat"])
@pytest.mark.parametrize("n", LENGTHS)
def test_patches_equal_essentia(es, identity_pb, n, mode):
    signal = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    expected = essentia_patches(es, identity_pb, signal, mode)
    bands = MUSICNN.compute(signal)
    got = make_patches(bands, 187, 93, mode)
    assert len(got) == len(expected) == patch_count(len(bands), 187, 93, mode)
    if len(got):
        assert np.abs(got - expected).max() <= 1e-4


def test_repeat_patch_cycles_the_remaining_frames():
    frames = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    patches = make_patches(frames, patch_size=4, hop_size=2, mode="repeat")
    assert patches.shape == (5, 4, 2)
    np.testing.assert_array_equal(patches[-1, :, 0], [8, 9, 8, 9])
    assert len(make_patches(frames, 4, 2, "discard")) == 4


@pytest.mark.parametrize("mode", ["discard", "repeat"])
@pytest.mark.parametrize("n_frames", [3, 4, 9, 10, 11])
def test_patch_starts_locate_each_patch(mode, n_frames):
    frames = np.arange(n_frames, dtype=np.float32)[:, None]
    patches = make_patches(frames, patch_size=4, hop_size=2, mode=mode)
    starts = patch_starts(n_frames, 4, 2, mode)
    assert len(starts) == len(patches)
    for index, start in enumerate(starts):
        if start is None:  # only the repeat patch is not a slice of the frames
            assert mode == "repeat" and index == len(patches) - 1
        else:
            np.testing.assert_array_equal(patches[index], frames[start : start + 4])
    if mode == "repeat" and n_frames % 2:
        assert starts[-1] is None


def test_short_input_counts():
    assert patch_count(64, 187, 93, "discard") == 0
    assert patch_count(64, 187, 93, "repeat") == 1
    assert patch_count(0, 187, 93, "repeat") == 0


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="lastPatchMode"):
        patch_count(10, 4, 2, "pad")


@pytest.mark.parametrize("mode", ["discard", "repeat"])
@pytest.mark.parametrize("batch_size", [1, 3, 64, -1])
@pytest.mark.parametrize("chunk", [1, 7, 5000])
def test_patch_batches_equal_make_patches(mode, batch_size, chunk):
    """Bands arriving in chunks, cut into batches: the same patches in the same order, each batch
    carrying the frames it spans, the repeat patch in the last batch when there is room."""
    from mirfeat.patches import patch_batches

    rng = np.random.default_rng(chunk)
    for n_frames in (0, 3, 4, 9, 10, 11, 50, 300):
        bands = rng.standard_normal((n_frames, 5)).astype(np.float32)
        expected = make_patches(bands, 4, 2, mode)
        for limit in (None, 2):
            batches = list(
                patch_batches([bands[i : i + chunk] for i in range(0, n_frames, chunk)], 4, 2, mode, batch_size, limit)
            )
            got = np.concatenate([b.patches for b in batches]) if batches else np.zeros((0, 4, 5), np.float32)
            np.testing.assert_array_equal(got, expected[:limit])
            for batch in batches:
                assert batch_size <= 0 or len(batch.patches) <= batch_size
                for patch, start in zip(batch.patches, batch.starts, strict=True):
                    if start is not None:
                        np.testing.assert_array_equal(batch.bands[start : start + 4], patch)


@pytest.mark.parametrize("block", [1, 255, 1000, 48000])
def test_streamed_bands_equal_the_whole_signal(block):
    from mirfeat.signatures import TEMPOCNN, VGGISH

    rng = np.random.default_rng(block)
    signal = (0.1 * rng.standard_normal(48000 + 37)).astype(np.float32)
    signal[:700] = 0  # silent leading frames take Essentia's streaming rule
    for signature in (MUSICNN, VGGISH, TEMPOCNN):
        whole = signature.compute(signal)
        parts = list(signature.stream(signal[i : i + block] for i in range(0, len(signal), block)))
        np.testing.assert_array_equal(np.concatenate(parts), whole)
