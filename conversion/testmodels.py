"""Essentia-format VGGish graphs and classifier heads with seeded random weights.

No VGGish weights ship on PyPI, so these stand in for audioset-vggish-3 and its heads: the same
architecture, input and node names as Essentia's files, and the same metadata layout, so they
exercise the same conversion and runtime paths. Their outputs mean nothing musically.

- `vggish-seeded-1`: VGGish (conv 64, pool, conv 128, pool, conv 256 x2, pool, conv 512 x2, pool,
  fc 4096 x2, fc 128), input `model/Placeholder` [B, 96, 64], output `model/vggish/embeddings`.
- `twoclass-vggish-seeded-1`: the legacy end-to-end style: the same body (same weights) with a
  2-class head on top, output `model/Softmax`.
- heads `<name>-vggish-seeded-1` on its 128-d embeddings, in both of Essentia's input styles:
  `model/Placeholder` -> `model/Softmax` (older heads) and `serving_default_model_Placeholder` ->
  `PartitionedCall:0` (newer heads).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

EMBEDDING_MODEL = "vggish-seeded-1"
EMBEDDING_DIM = 128
HIDDEN_UNITS = 100
_CONV_BLOCKS = [(64,), (128,), (256, 256), (512, 512)]
_FC_UNITS = [4096, 4096, EMBEDDING_DIM]


def _he(rng: np.random.Generator, shape: tuple, fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _dense(x, rng, units: int, name: str, activation=None):
    fan_in = int(x.shape[-1])
    with tf.name_scope(name):
        kernel = tf.constant(_he(rng, (fan_in, units), fan_in), name="kernel")
        bias = tf.constant(np.full(units, 0.01, np.float32), name="bias")
        out = tf.nn.bias_add(tf.matmul(x, kernel, name="MatMul"), bias, name="BiasAdd")
        return activation(out) if activation else out


def _vggish_body(x, seed: int):
    """[B, 96, 64] -> embeddings [B, 128], named as in Essentia's audioset-vggish-3."""
    rng = np.random.default_rng(seed)
    with tf.name_scope("vggish"):
        net = tf.reshape(x, [-1, 96, 64, 1])
        channels = 1
        for block, widths in enumerate(_CONV_BLOCKS, 1):
            for i, width in enumerate(widths, 1):
                name = f"conv{block}" if len(widths) == 1 else f"conv{block}/conv{block}_{i}"
                with tf.name_scope(name):
                    kernel = tf.constant(_he(rng, (3, 3, channels, width), 9 * channels), name="weights")
                    bias = tf.constant(np.full(width, 0.01, np.float32), name="biases")
                    net = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(net, kernel, 1, "SAME"), bias))
                channels = width
            net = tf.nn.max_pool2d(net, 2, 2, "SAME", name=f"pool{block}")
        net = tf.reshape(net, [-1, int(np.prod(net.shape[1:]))], name="Flatten")
        for i, units in enumerate(_FC_UNITS):
            last = i == len(_FC_UNITS) - 1
            name = "fc2" if last else f"fc1/fc1_{i + 1}"
            net = _dense(net, rng, units, name, None if last else tf.nn.relu)
        return tf.identity(net, name="embeddings")


def _head(x, seed: int, n_classes: int, output: str, activation: str):
    """Essentia's transfer-learning head: dense 100 (ReLU) -> dense n -> softmax/sigmoid."""
    rng = np.random.default_rng(seed)
    hidden = _dense(x, rng, HIDDEN_UNITS, "dense", tf.nn.relu)
    logits = _dense(hidden, rng, n_classes, "dense_1")
    return (tf.nn.softmax if activation == "softmax" else tf.nn.sigmoid)(logits, name=output)


def _save(graph: tf.Graph, outputs: list[str], path: Path, metadata: dict) -> Path:
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph.as_graph_def(), outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(graph_def.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def _metadata(name: str, kind: str, classes: list[str], inputs: list, outputs: list, inference: dict) -> dict:
    return {
        "name": name,
        "type": kind,
        "link": "",
        "version": "1",
        "description": "seeded random weights in an Essentia model's layout, for tests and benchmarks",
        "author": "mirfeat",
        "email": "",
        "release_date": "",
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "classes": classes,
        "model_types": ["frozen_model"],
        "dataset": {"name": "none", "size": "", "metrics": {}},
        "schema": {"inputs": inputs, "outputs": outputs},
        "citation": "",
        "inference": inference,
    }


def _output(name: str, shape: list, purpose: str, op: str = "") -> dict:
    return {"name": name, "type": "float", "shape": shape, "op": op, "output_purpose": purpose}


def build_vggish(out_dir: Path, seed: int = 0) -> Path:
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 96, 64], name="Placeholder")
        _vggish_body(x, seed)
    meta = _metadata(
        EMBEDDING_MODEL,
        "embedding extractor",
        "",
        [{"name": "model/Placeholder", "type": "float", "shape": [96, 64]}],
        [_output("model/vggish/embeddings", [1, EMBEDDING_DIM], "embeddings")],
        {"sample_rate": 16000, "algorithm": "TensorflowPredictVGGish"},
    )
    return _save(graph, ["model/vggish/embeddings"], Path(out_dir) / f"{EMBEDDING_MODEL}.pb", meta)


def build_vggish_classifier(out_dir: Path, seed: int = 0, head_seed: int = 1) -> Path:
    """Body with `seed` (the weights of vggish-seeded-1) and the head of `build_head(head_seed)`."""
    name = "twoclass-vggish-seeded-1"
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 96, 64], name="Placeholder")
        _head(_vggish_body(x, seed), head_seed, 2, "Softmax", "softmax")
    meta = _metadata(
        name,
        "multi-class classifier",
        ["class_a", "class_b"],
        [{"name": "model/Placeholder", "type": "float", "shape": [96, 64]}],
        [
            _output("model/Softmax", [1, 2], "predictions", "Softmax"),
            _output("model/vggish/embeddings", [1, EMBEDDING_DIM], "embeddings"),
        ],
        {"sample_rate": 16000, "algorithm": "TensorflowPredictVGGish"},
    )
    return _save(graph, ["model/Softmax", "model/vggish/embeddings"], Path(out_dir) / f"{name}.pb", meta)


def build_head(out_dir: Path, task: str, seed: int, n_classes: int = 2, style: str = "placeholder") -> Path:
    """A head on vggish-seeded-1 embeddings; style "placeholder" (softmax) or "serving" (sigmoid)."""
    name = f"{task}-{EMBEDDING_MODEL}"
    graph = tf.Graph()
    with graph.as_default():
        if style == "placeholder":
            with tf.name_scope("model"):
                x = tf.compat.v1.placeholder(tf.float32, [None, EMBEDDING_DIM], name="Placeholder")
                _head(x, seed, n_classes, "Softmax", "softmax")
            input_name, outputs = "model/Placeholder", ["model/Softmax", "model/dense/BiasAdd"]
            shapes, op = ([EMBEDDING_DIM], [n_classes], [HIDDEN_UNITS]), "Softmax"
        else:
            x = tf.compat.v1.placeholder(tf.float32, [None, EMBEDDING_DIM], name="serving_default_model_Placeholder")
            with tf.name_scope("StatefulPartitionedCall"):
                probabilities = _head(x, seed, n_classes, "Sigmoid", "sigmoid")
            tf.identity(probabilities, name="PartitionedCall")
            input_name, outputs = "serving_default_model_Placeholder", ["PartitionedCall"]
            shapes, op = (["batch_size", EMBEDDING_DIM], ["batch_size", n_classes]), "Sigmoid"
    schema_outputs = [
        _output(f"{outputs[0]}:0" if style != "placeholder" else outputs[0], shapes[1], "predictions", op)
    ]
    if style == "placeholder":
        schema_outputs.append(_output(outputs[1], shapes[2], "", "Dense"))
    meta = _metadata(
        name,
        "multi-class classifier" if style == "placeholder" else "multi-label classifier",
        [f"{task}_{i}" for i in range(n_classes)],
        [{"name": input_name, "type": "float", "shape": shapes[0]}],
        schema_outputs,
        {
            "sample_rate": 16000,
            "algorithm": "TensorflowPredict2D",
            "embedding_model": {"algorithm": "TensorflowPredictVGGish", "model_name": EMBEDDING_MODEL, "link": ""},
        },
    )
    return _save(graph, outputs, Path(out_dir) / f"{name}.pb", meta)


def build_all(out_dir: Path, n_heads: int = 2) -> list[Path]:
    """vggish-seeded-1, the two-class classifier and `n_heads` heads alternating input styles."""
    paths = [build_vggish(out_dir), build_vggish_classifier(out_dir)]
    for i in range(n_heads):
        style = "placeholder" if i % 2 == 0 else "serving"
        n_classes = 2 if style == "placeholder" else 4
        paths.append(build_head(out_dir, f"task{i + 1}", seed=i + 1, n_classes=n_classes, style=style))
    return paths
