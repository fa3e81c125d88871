"""EffNet-Discogs: Essentia's standard-mode batching (bs64, lastBatchMode, its short frame-count
estimate) and patch contents, against TensorflowPredictEffnetDiscogs on an identity graph."""

import itertools

import numpy as np
import pytest

import mirfeat
from mirfeat.essentia import TensorflowPredictEffnetDiscogs
from mirfeat.families import EFFNET_DISCOGS_FAMILY
from mirfeat.patches import essentia_padding_patches, make_patches, patch_count


def lengths_around_boundaries() -> list[int]:
    """Signal lengths whose frame count is 128 + 62 k (where Essentia's padding estimate is one
    patch short), one sample either side, for patch counts around 1, 2, 6 and the 64-patch batch."""
    lengths = []
    for k in (0, 1, 5, 62, 63, 64):
        n_frames = 128 + 62 * k
        lengths += [256 * (n_frames - 2) + 1, 256 * (n_frames - 1), 256 * (n_frames - 1) + 1]
    return lengths + [300, 5000]


def essentia_rows(es, pb, signal, **params):
    rows = es.TensorflowPredictEffnetDiscogs(graphFilename=str(pb), **params)(signal)
    return np.asarray(rows, np.float32).reshape(-1, 96) if len(rows) else np.zeros((0, 96), np.float32)


@pytest.mark.parametrize("n", lengths_around_boundaries())
def test_rows_equal_essentia_in_every_batch_mode(es, identity_effnet, n):
    """Same rows (count and content) as Essentia for lastBatchMode same/zeros/discard x
    lastPatchMode discard/repeat; identity output rows are the patches' frames."""
    signal = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    onnx = identity_effnet.with_suffix(".onnx")
    for batch_mode, patch_mode in itertools.product(("same", "zeros", "discard"), ("discard", "repeat")):
        params = {"lastBatchMode": batch_mode, "lastPatchMode": patch_mode}
        expected = essentia_rows(es, identity_effnet, signal, **params)
        got = TensorflowPredictEffnetDiscogs(graphFilename=str(onnx), **params)(signal)
        assert got.shape == expected.shape, (n, params)
        if len(got):
            assert np.abs(got - expected).max() <= 1e-4, (n, params)


def test_same_mode_pads_from_a_short_estimate_as_essentia_does(es, identity_effnet):
    """Where (n_frames - 128) % 62 == 0 Essentia's estimate is one patch short: 190 frames make 2
    patches, it counts 1 and pads 63, then erases 63 output rows (with a 2-D output, one row per
    patch, that leaves one patch fewer than there are; the identity graph gives 128 rows a patch)."""
    n = 256 * (128 + 62 - 1)
    signal = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    assert patch_count(190, 128, 62) == 2
    assert essentia_padding_patches(n, 512, 256, 128, 62, 64, "discard") == 63
    got = TensorflowPredictEffnetDiscogs(graphFilename=str(identity_effnet.with_suffix(".onnx")))(signal)
    assert len(got) == 64 * 128 - 63 == len(essentia_rows(es, identity_effnet, signal))


def test_model_api_gives_every_patch_through_the_fixed_batch(identity_effnet):
    """load_model runs a bs64 graph at its fixed batch, padding the last one, and returns exactly
    the patches (not Essentia's batch-mode row counts)."""
    model = mirfeat.load_model(identity_effnet.with_suffix(".onnx"), batch_size=7)
    assert isinstance(model, mirfeat.Model) and model.family is EFFNET_DISCOGS_FAMILY
    assert model.graph.session.fixed_batch == 64
    signal = np.random.default_rng(1).uniform(-0.5, 0.5, 16000 * 70).astype(np.float32)  # 70 s: 69 patches
    bands = model.bands(signal)
    got = model.run_patches(bands)["PartitionedCall"]
    expected = make_patches(bands, 128, 62)
    assert got.shape == expected.shape == (69, 128, 96)
    np.testing.assert_array_equal(got, expected)
    assert np.allclose(model.patch_times(3), [0, 62 * 256 / 16000, 2 * 62 * 256 / 16000])
