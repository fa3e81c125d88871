"""Essentia-format frozen graphs from the checkpoints that PyPI's `musicnn` wheel ships.

The `musicnn` package (Jordi Pons, ISC licence) holds the TensorFlow checkpoints behind
Essentia's msd-musicnn-1, mtt-musicnn-1, msd-vgg-1 and mtt-vgg-1. Its graph code, built inside
`name_scope("model")`, gives the node names Essentia's graphs have, so the frozen result runs in
Essentia's `TensorflowPredictMusiCNN` with its default parameters.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import tensorflow as tf

PATCH_FRAMES = 187
N_MELS = 96

CITATION = """@inproceedings{pons2019musicnn,
  title={musicnn: Pre-trained convolutional neural networks for music audio tagging},
  author={Pons, Jordi and Serra, Xavier},
  booktitle={Late-breaking/demo session in 20th International Society for Music Information
             Retrieval Conference (LBD-ISMIR2019)},
  year={2019}
}"""

WEIGHTS_LICENSE = (
    "Weights from the musicnn package (https://github.com/jordipons/musicnn), "
    "Copyright (c) 2019 Jordi Pons, ISC licence."
)

DATASETS = {
    "MSD": ("The Million Song Dataset", "Last.fm tags"),
    "MTT": ("MagnaTagATune", "MagnaTagATune tags"),
}

# Essentia model name -> (musicnn checkpoint, embedding output and its width)
MODELS = {
    "msd-musicnn-1": ("MSD_musicnn", "model/dense/BiasAdd", 200),
    "mtt-musicnn-1": ("MTT_musicnn", "model/dense/BiasAdd", 200),
    "msd-vgg-1": ("MSD_vgg", "model/flatten/Reshape", 256),
    "mtt-vgg-1": ("MTT_vgg", "model/flatten/Reshape", 256),
}


def musicnn_dir() -> Path:
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `musicnn` package is not installed: pip install --no-deps musicnn==0.1.0")
    return Path(list(spec.submodule_search_locations)[0])


def _labels(dataset: str) -> list[str]:
    from musicnn import configuration

    return list(configuration.MSD_LABELS if dataset == "MSD" else configuration.MTT_LABELS)


def metadata(name: str) -> dict:
    """Essentia-style metadata JSON for one of MODELS."""
    checkpoint, embedding, width = MODELS[name]
    dataset = checkpoint.split("_")[0]
    architecture = "MusiCNN" if "musicnn" in checkpoint else "VGG"
    labels = _labels(dataset)
    logits = "model/dense_1/BiasAdd" if architecture == "MusiCNN" else "model/dense/BiasAdd"
    return {
        "name": f"{dataset} {architecture}",
        "type": "auto-tagging",
        "link": f"https://essentia.upf.edu/models/autotagging/{dataset.lower()}/{name}.pb",
        "version": "1",
        "description": f"prediction of the top-{len(labels)} tags in the dataset",
        "author": "Jordi Pons",
        "email": "",
        "release_date": "2020-03-31",
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "classes": labels,
        "model_types": ["frozen_model"],
        "dataset": {"name": DATASETS[dataset][0], "size": DATASETS[dataset][1], "metrics": {}},
        "schema": {
            "inputs": [{"name": "model/Placeholder", "type": "float", "shape": [PATCH_FRAMES, N_MELS]}],
            "outputs": [
                {
                    "name": "model/Sigmoid",
                    "type": "float",
                    "shape": [1, len(labels)],
                    "op": "Sigmoid",
                    "output_purpose": "predictions",
                },
                {
                    "name": logits,
                    "type": "float",
                    "shape": [1, len(labels)],
                    "op": "fully connected",
                    "description": "logits",
                    "output_purpose": "",
                },
                {
                    "name": embedding,
                    "type": "float",
                    "shape": [1, width],
                    "op": "fully connected" if architecture == "MusiCNN" else "flatten",
                    "description": "embeddings",
                    "output_purpose": "embeddings",
                },
            ],
        },
        "citation": CITATION,
        "inference": {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"},
        "license": WEIGHTS_LICENSE,
    }


def freeze(name: str, out_dir: str | Path) -> Path:
    """Build `<out_dir>/<name>.pb` and its JSON from the musicnn checkpoint; returns the .pb path."""
    from musicnn import models

    checkpoint, _, _ = MODELS[name]
    meta = metadata(name)
    tf.compat.v1.disable_v2_behavior()  # TF1 semantics, or the bool-flag variant fails to freeze
    graph = tf.Graph()
    with graph.as_default():
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, N_MELS], name="Placeholder")
            # Essentia feeds nothing by default (isTrainingName ""), so the flag defaults to False.
            is_training = tf.compat.v1.placeholder_with_default(False, [], name="Placeholder_1")
            logits = models.define_model(x, is_training, checkpoint, len(meta["classes"]))[0]
            tf.nn.sigmoid(logits, name="Sigmoid")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            # The shipped `checkpoint` index file names its author's paths: restore by prefix.
            saver.restore(session, str(musicnn_dir() / checkpoint) + "/")
            outputs = [o["name"] for o in meta["schema"]["outputs"]]
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), outputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pb_path = out_dir / f"{name}.pb"
    pb_path.write_bytes(frozen.SerializeToString())
    pb_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return pb_path
