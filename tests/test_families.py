"""The family table: one record per Essentia wrapper, read by load_model, the facade and conversion."""

import json

import numpy as np
import pytest
from conftest import AUDIO_DIR, ESSENTIA_MODELS

import mirfeat
import mirfeat.essentia
from mirfeat.families import (
    EFFNET_DISCOGS_FAMILY,
    FAMILIES,
    MAEST_FAMILY,
    MUSICNN_FAMILY,
    PREDICT_2D_FAMILY,
    TEMPOCNN_FAMILY,
    VGGISH_FAMILY,
    family_for,
    family_for_input,
    maest_normalise,
    standardise_patches,
)

# Essentia's defaults, from its wrappers' declareParameters (algorithm: patch, hop, batch, input, output).
ESSENTIA_DEFAULTS = {
    "TensorflowPredictMusiCNN": (187, 93, 64, "model/Placeholder", "model/Sigmoid"),
    "TensorflowPredictVGGish": (96, 93, 64, "model/Placeholder", "model/Sigmoid"),
    "TensorflowPredictEffnetDiscogs": (128, 62, 64, "serving_default_melspectrogram", "PartitionedCall"),
    "TensorflowPredictMAEST": (1876, 1875, 1, "melspectrogram", "Identity"),
    "TensorflowPredictTempoCNN": (256, 128, 16, "input", "output"),
    "TensorflowPredictCREPE": (1, 1, 16, "frames", "model/classifier/Sigmoid"),
    "TensorflowPredict2D": (1, 1, 64, "model/Placeholder", "model/Sigmoid"),
}


@pytest.mark.parametrize("algorithm", list(ESSENTIA_DEFAULTS))
def test_table_holds_essentias_defaults(algorithm):
    family = FAMILIES[algorithm]
    assert family.algorithm == algorithm
    assert (
        family.patch_size,
        family.patch_hop_size,
        family.batch_size,
        family.input_name,
        family.output_name,
    ) == ESSENTIA_DEFAULTS[algorithm]


def test_facade_has_a_class_per_family_with_its_defaults():
    for algorithm, family in FAMILIES.items():
        if not family.facade:
            assert not hasattr(mirfeat.essentia, algorithm)
            continue
        cls = getattr(mirfeat.essentia, algorithm)
        assert cls.__name__ == algorithm and cls.family is family
        assert algorithm in mirfeat.essentia.__all__


@pytest.mark.parametrize(
    "shape, family",
    [
        ((187, 96), MUSICNN_FAMILY),
        ((96, 64), VGGISH_FAMILY),
        ((128, 96), EFFNET_DISCOGS_FAMILY),
        ((1876, 96), MAEST_FAMILY),
        ((626, 96), MAEST_FAMILY),
        ((316, 96), MAEST_FAMILY),
        ((40, 256, 1), TEMPOCNN_FAMILY),
        ((40, -1, 1), TEMPOCNN_FAMILY),  # deeptemp_k16's input: any number of frames
        ((40, None, 1), TEMPOCNN_FAMILY),
        ((1280,), PREDICT_2D_FAMILY),
        ((1, 200), PREDICT_2D_FAMILY),
        ((-1, 96), None),  # MusiCNN, EffNet and MAEST all fit: not guessed
        ((7, 7), None),
    ],
)
def test_family_for_input_shape(shape, family):
    assert family_for_input(shape) is family


def test_unknown_algorithm_names_the_source():
    with pytest.raises(ValueError, match="x.json: unknown Essentia algorithm 'TensorflowPredictNope'"):
        family_for("TensorflowPredictNope", "x.json")


def test_patching_rules():
    assert MAEST_FAMILY.patching("discogs-maest-10s-pw-2.onnx") == (626, 625)
    assert MAEST_FAMILY.patching("discogs-maest-10s-pw-2.onnx", 100, 50) == (626, 625)  # over the user's values
    assert MAEST_FAMILY.patching("my-maest.onnx", 316, 313) == (316, 313)
    assert MAEST_FAMILY.patching("my-maest.onnx") == (1876, 1875)
    assert MUSICNN_FAMILY.patching("discogs-maest-5s-x.onnx") == (187, 93)  # the rule is MAEST's alone
    assert MUSICNN_FAMILY.patching("m.onnx", 187, 0) == (187, 187)  # hop 0: no overlap


def test_maest_normalisation_constants():
    bands = np.array([[2.06755686098554, 2.06755686098554 + 2 * 1.268292820667291]], np.float32)
    np.testing.assert_allclose(maest_normalise(bands), [[0.0, 1.0]], atol=1e-6)


def test_standardise_patches_uses_population_std_and_spares_constant_patches():
    patches = np.stack([np.arange(12, dtype=np.float32).reshape(3, 4), np.full((3, 4), 5.0, np.float32)])
    out = standardise_patches(patches)
    np.testing.assert_allclose(out[0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(out[0].std(), 1, atol=1e-6)  # numpy's std is the population std
    np.testing.assert_array_equal(out[1], 0)


def test_layouts():
    patches = np.zeros((2, 256, 40), np.float32)
    assert TEMPOCNN_FAMILY.model_input(patches).shape == (2, 40, 256, 1)
    assert MUSICNN_FAMILY.model_input(np.zeros((2, 187, 96), np.float32)).shape == (2, 187, 96)
    assert PREDICT_2D_FAMILY.model_input(np.zeros((5, 1, 128), np.float32)).shape == (5, 128)
    assert PREDICT_2D_FAMILY.model_input(np.zeros((5, 4, 128), np.float32)).shape == (5, 4, 128)


def test_a_head_without_an_embedding_model_says_what_it_reads(tmp_path):
    """A head whose metadata names no embedding model, called on audio: the error says what to do."""
    bundled = mirfeat.load_model()
    head = tmp_path / "head.onnx"
    head.write_bytes((ESSENTIA_MODELS / "identity" / "identity2x2.onnx").read_bytes())
    head.with_suffix(".json").write_text(
        json.dumps({"name": "head", "inference": {"algorithm": "TensorflowPredict2D", "sample_rate": 16000}})
    )
    model = mirfeat.load_model(head)
    assert isinstance(model, mirfeat.Head)
    with pytest.raises(ValueError, match="reads embeddings .* names no inference.embedding_model"):
        model(np.zeros(16000, np.float32))
    assert bundled.family is MUSICNN_FAMILY


def test_deeptemp_converts_as_tempocnn_and_equals_essentia(es, deeptemp):
    """The shared TempoCNN graph, converted without a JSON, is recognised by its input shape
    [40, -1, 1]: TensorflowPredictTempoCNN at 11025 Hz, loaded as an audio model."""
    meta = json.loads(deeptemp.with_suffix(".json").read_text())
    assert meta["inference"] == {"sample_rate": 11025, "algorithm": "TensorflowPredictTempoCNN"}
    model = mirfeat.load_model(deeptemp)
    assert isinstance(model, mirfeat.Model) and model.family is TEMPOCNN_FAMILY
    audio = es.MonoLoader(filename=str(AUDIO_DIR / "techno_loop.mp3"), sampleRate=11025)()
    pb = ESSENTIA_MODELS / "tempocnn" / "deeptemp_k16.pb"
    expected = es.TensorflowPredictTempoCNN(graphFilename=str(pb))(audio)
    got = mirfeat.essentia.TensorflowPredictTempoCNN(graphFilename=str(deeptemp))(audio)
    assert got.shape == expected.shape == (4, 256)
    assert np.abs(got - expected).max() <= 1e-4
    result = model(audio, sample_rate=11025)
    np.testing.assert_allclose(result.activations, expected, rtol=0, atol=1e-4)
