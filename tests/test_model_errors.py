"""Bad model files are found at load, with one message naming the file and the field."""

import json
import shutil

import numpy as np
import pytest

import mirfeat
from mirfeat.cli import main
from mirfeat.model import BUNDLED_DIR


@pytest.fixture
def model_copy(tmp_path):
    """The bundled msd-musicnn-1 (graph, frame-sharing pair, JSON) copied to edit its metadata."""
    for path in BUNDLED_DIR.glob("msd-musicnn-1*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "msd-musicnn-1.onnx"


def edit_metadata(model, change):
    path = model.with_suffix(".json")
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def set_output_name(doc):
    doc["schema"]["outputs"][1]["name"] = "model/DoesNotExist"


def set_algorithm(doc):
    doc["inference"]["algorithm"] = "TensorflowPredictVGGish"


def set_rate(doc):
    doc["inference"]["sample_rate"] = "abc"


def set_classes(doc):
    doc["classes"] = 7


def set_outputs(doc):
    doc["schema"]["outputs"] = ["model/Sigmoid"]


def drop_input_name(doc):
    del doc["schema"]["inputs"][0]["name"]


def fewer_labels(doc):
    doc["classes"] = doc["classes"][:10]


def swap_frame_sharing(doc):
    sharing = doc["mirfeat"]["frame_sharing"]
    sharing["frames_model"], sharing["patch_model"] = sharing["patch_model"], sharing["frames_model"]


@pytest.mark.parametrize(
    "change, message",
    [
        (set_output_name, r"schema.outputs\[1\].name: no tensor 'model/DoesNotExist'"),
        (set_algorithm, r"input model/Placeholder:0 is .*187, 96.*TensorflowPredictVGGish .* patches of \[96, 64\]"),
        (set_rate, r"inference.sample_rate must be a number, not 'abc'"),
        (set_classes, r"classes must be a list of labels"),
        (set_outputs, r"schema.outputs\[0\] must be an object with a tensor name"),
        (drop_input_name, r"schema.inputs\[0\] must be an object with a tensor name"),
        (fewer_labels, r"classes lists 10 labels, but the predictions output model/Sigmoid has 50"),
        (swap_frame_sharing, r"mirfeat.frame_sharing: .* do not fit the model"),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_bad_metadata_fails_at_load_naming_file_and_field(model_copy, change, message, capsys):
    edit_metadata(model_copy, change)
    with pytest.raises(mirfeat.ModelError, match=message) as error:
        mirfeat.load_model(model_copy)
    assert str(model_copy.parent) in str(error.value)
    assert main(["tag", "nothing-read-first.wav", "--model", str(model_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_not_json_and_not_an_object(model_copy):
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(mirfeat.ModelError, match="msd-musicnn-1.json: cannot read model metadata"):
        mirfeat.load_model(model_copy)
    model_copy.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(mirfeat.ModelError, match="model metadata must be a JSON object"):
        mirfeat.load_model(model_copy)


def test_metadata_without_schema_still_tags(model_copy):
    """No schema: the outputs come from the graph and the predictions are the one output as wide
    as the labels."""
    edit_metadata(model_copy, lambda doc: doc.pop("schema"))
    model = mirfeat.load_model(model_copy)
    assert model.predictions_name == "model/Sigmoid:0"
    result = model(np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 4).astype(np.float32))
    assert len(result.top_k(3)) == 3


def test_bundled_model_by_onnx_name_from_anywhere(tmp_path, monkeypatch):
    """`graphFilename="msd-musicnn-1.onnx"` finds the bundled model outside its folder too."""
    from mirfeat.essentia import TensorflowPredictMusiCNN

    monkeypatch.chdir(tmp_path)
    out = TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1.onnx")(np.zeros(16000 * 4, np.float32))
    assert out.shape == (1, 50)


def test_facade_refuses_bad_parameters_at_construction():
    from mirfeat.errors import ModelError
    from mirfeat.essentia import TensorflowPredictMusiCNN

    graph = str(BUNDLED_DIR / "msd-musicnn-1.onnx")
    with pytest.raises(ModelError, match=r"msd-musicnn-1\.onnx: TensorflowPredictMusiCNN: output no tensor 'nope'"):
        TensorflowPredictMusiCNN(graphFilename=graph, output="nope")
    # Essentia's ranges: patchHopSize [0, inf), batchSize [-1, inf), lastPatchMode {discard, repeat}.
    with pytest.raises(ValueError, match=r"patchHopSize must be in \[0, inf\), not -1"):
        TensorflowPredictMusiCNN(graphFilename=graph, patchHopSize=-1)
    with pytest.raises(ValueError, match=r"batchSize must be in \[-1, inf\), not -2"):
        TensorflowPredictMusiCNN(graphFilename=graph, batchSize=-2)
    with pytest.raises(ValueError, match="lastPatchMode must be one of"):
        TensorflowPredictMusiCNN(graphFilename=graph, lastPatchMode="pad")
    # The edges of the ranges are accepted: no overlap, everything in one batch.
    model = TensorflowPredictMusiCNN(graphFilename=graph, patchHopSize=0, batchSize=-1, output="model/Sigmoid")
    assert (model.patchHopSize, model.batchSize) == (187, -1)
