"""Packaging promises: a light import, the bundled model and its licence."""

import subprocess
import sys

import mirfeat
from mirfeat.model import BUNDLED_DIR


def test_import_is_light():
    code = (
        "import sys, mirfeat, mirfeat.essentia, mirfeat.cli; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'essentia', 'tf2onnx', 'onnx', 'torch', 'librosa')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bundled_model_ships_with_licence_and_labels():
    assert mirfeat.bundled_models() == ["msd-musicnn-1"]
    assert "ISC" in (BUNDLED_DIR / "LICENSE-musicnn").read_text()
    model = mirfeat.load_model()
    assert len(model.labels) == 50 and model.labels[0] == "rock"
    assert model.metadata.output_for("embeddings") == "model/dense/BiasAdd"
