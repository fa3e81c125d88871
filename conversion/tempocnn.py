"""Essentia-format frozen graphs from the Keras TempoCNN models that PyPI's `tempocnn` wheel ships.

The `tempocnn` package (Hendrik Schreiber, https://github.com/hendriks73/tempo-cnn; code and
models under the GNU AGPL v3) holds the Keras .h5 models of the tempo networks Essentia runs with
its `TempoCNN` algorithm. Frozen here with Essentia's tensor names (input `input` [B, 40, frames, 1],
output `output`, the softmax over 256 tempo classes, class i = 30 + i BPM), they run in Essentia's
`TensorflowPredictTempoCNN` and `TempoCNN` with their default parameters.

Only the models trained on standardised input are offered: Essentia's wrapper standardises each
patch (zero mean, unit std). The wheel's fcn, cnn and ismir2018 were trained on input divided by
its maximum, which the wrapper cannot give them, and are refused.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

N_BANDS = 40
PATCH_FRAMES = 256
N_CLASSES = 256
BPM_OFFSET = 30
FREEZE_MAX_ABS_DIFF = 1e-5

CITATION = """@inproceedings{schreiber2019musical,
  title={Musical Tempo and Key Estimation using Convolutional Neural Networks with Directional Filters},
  author={Schreiber, Hendrik and M{\\"u}ller, Meinard},
  booktitle={Proceedings of the Sound and Music Computing Conference (SMC)},
  address={M{\\'a}laga, Spain},
  year={2019}
}"""
CITATION_MAZURKA = """@inproceedings{schreiber2020modeling,
  title={Modeling and Estimating Local Tempo: A Case Study on Chopin's Mazurkas},
  author={Schreiber, Hendrik and Zalkow, Frank and M{\\"u}ller, Meinard},
  booktitle={Proceedings of the 21st International Society for Music Information Retrieval Conference (ISMIR)},
  year={2020}
}"""

WEIGHTS_LICENSE = (
    "Weights from the tempocnn package (https://github.com/hendriks73/tempo-cnn), "
    "Hendrik Schreiber, GNU Affero General Public License v3."
)

# Wheel models trained on standardised input, as Essentia's wrapper feeds them.
MODELS = (
    [f"deeptemp_k{k}" for k in (2, 4, 8)]
    + [f"deepsquare_k{k}" for k in (1, 2, 4, 8)]
    + [f"shallowtemp_k{k}" for k in (1, 2, 4, 6)]
    + [f"dt_maz_{kind}_fold{fold}" for kind in ("m", "v") for fold in range(5)]
)
# Wheel models Essentia's wrapper cannot feed: they were trained on max-normalised input.
MAX_NORMALISED = ("fcn", "cnn", "ismir2018")


class UnsupportedModel(ValueError):
    pass


def tempocnn_dir() -> Path:
    spec = importlib.util.find_spec("tempocnn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the `tempocnn` package is not installed: pip install --no-deps tempocnn==0.0.8 "
            "(its own dependencies, TensorFlow 2.17 and librosa, are not needed here)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def check_name(name: str) -> None:
    if name in MAX_NORMALISED:
        raise UnsupportedModel(
            f"{name}: trained on input divided by its maximum, while Essentia's TensorflowPredictTempoCNN "
            "standardises each patch; use one of " + ", ".join(MODELS)
        )
    if name not in MODELS:
        raise UnsupportedModel(f"{name}: not a tempocnn wheel model this command freezes ({', '.join(MODELS)})")


def metadata(name: str) -> dict:
    """Essentia-style metadata JSON for one of MODELS."""
    import tensorflow as tf

    mazurka = name.startswith("dt_maz")
    title = name.replace("_", " ").replace("deeptemp", "DeepTemp").replace("deepsquare", "DeepSquare")
    title = title.replace("shallowtemp", "ShallowTemp").replace("dt maz", "DT-Maz")
    return {
        "name": title,
        "type": "tempo estimation",
        "link": "https://github.com/hendriks73/tempo-cnn",
        "version": "1",
        "description": f"tempo classification: {N_CLASSES} classes, {BPM_OFFSET} to {BPM_OFFSET + N_CLASSES - 1} BPM",
        "author": "Hendrik Schreiber",
        "email": "hs@tagtraum.com",
        "release_date": "",
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "classes": [str(BPM_OFFSET + i) for i in range(N_CLASSES)],
        "model_types": ["frozen_model"],
        "dataset": {"name": "Chopin Mazurkas" if mazurka else "", "size": "", "metrics": {}},
        "schema": {
            "inputs": [{"name": "input", "type": "float", "shape": [N_BANDS, PATCH_FRAMES, 1]}],
            "outputs": [
                {
                    "name": "output",
                    "type": "float",
                    "shape": [1, N_CLASSES],
                    "op": "Softmax",
                    "description": "probability of each tempo class (class i = 30 + i BPM)",
                    "output_purpose": "predictions",
                }
            ],
        },
        "citation": CITATION_MAZURKA if mazurka else CITATION,
        "inference": {"sample_rate": 11025, "algorithm": "TempoCNN"},
        "license": WEIGHTS_LICENSE,
        "source": {"package": "tempocnn", "file": f"tempocnn/models/{name}.h5"},
    }


def freeze(name: str, out_dir: str | Path, seed: int = 0) -> tuple[Path, float]:
    """Freeze the wheel's `<name>.h5` into `<out_dir>/<name>.pb` and its JSON. Returns the .pb path
    and the largest difference between the frozen graph and the Keras model on the same
    standardised patches (a ValueError above FREEZE_MAX_ABS_DIFF)."""
    import tensorflow as tf  # here: the name checks above run without it

    check_name(name)
    h5 = tempocnn_dir() / "models" / f"{name}.h5"
    tf.compat.v1.disable_v2_behavior()  # a graph with a placeholder named `input`, as Essentia's
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.keras.backend.set_session(session)
        model = tf.keras.models.load_model(str(h5), compile=False)
        x = tf.compat.v1.placeholder(tf.float32, [None, N_BANDS, None, 1], name="input")
        tf.identity(model(x, training=False), name="output")
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["output"])
        patches = np.random.default_rng(seed).standard_normal((3, N_BANDS, PATCH_FRAMES, 1)).astype(np.float32)
        expected = session.run(model.outputs[0], {model.inputs[0]: patches})
    check = tf.Graph()
    with check.as_default(), tf.compat.v1.Session(graph=check) as session:
        tf.compat.v1.import_graph_def(frozen, name="")
        got = session.run("output:0", {"input:0": patches})
    diff = float(np.abs(got - expected).max())
    if got.shape != (len(patches), N_CLASSES) or diff > FREEZE_MAX_ABS_DIFF:
        raise ValueError(f"{h5}: the frozen graph differs from the Keras model ({got.shape}, max abs diff {diff:.3g})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pb_path = out_dir / f"{name}.pb"
    pb_path.write_bytes(frozen.SerializeToString())
    pb_path.with_suffix(".json").write_text(json.dumps(metadata(name), indent=2) + "\n")
    return pb_path, diff
