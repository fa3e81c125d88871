"""Tiny TensorFlow graphs for tests, built in a separate process (TensorFlow and Essentia must
not share one): `python tests/tf_graphs.py KIND OUT.pb`, KIND one of the names at the bottom.

The identity graph (`model/Placeholder` [B, T, F] -> `model/Identity`) makes Essentia's
TensorflowPredict* wrappers return the exact patches they would feed a model. The patches-2d graph
(`model/Placeholder` [B, 4, 128] -> `model/Flatten` [B, 512]) does the same for TensorflowPredict2D
with patchSize 4, one output row per patch.
"""

import sys

import tensorflow as tf


def identity(path: str, frames: int = 187, bands: int = 96) -> None:
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, frames, bands], name="Placeholder")
        tf.identity(x, name="Identity")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


def identity_vggish(path: str) -> None:
    identity(path, frames=96, bands=64)


def identity_effnet(path: str, batch: int | None = 64) -> None:
    """EffNet-Discogs' names and shapes: `serving_default_melspectrogram` [64, 128, 96] -> `PartitionedCall`."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 128, 96], name="serving_default_melspectrogram")
        tf.identity(x, name="PartitionedCall")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


def identity_maest(path: str) -> None:
    """MAEST's names with any patch length: `melspectrogram` [B, T, 96] -> `Identity`."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None, 96], name="melspectrogram")
        tf.identity(x, name="Identity")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


def identity_tempocnn(path: str) -> None:
    """TempoCNN's names and layout: `input` [B, 40, 256, 1] -> `output`."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 40, 256, 1], name="input")
        tf.identity(x, name="output")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


def identity_fsdsinet(path: str) -> None:
    """FSD-SINet's names and layout: `x` [B, 101, 96, 1] -> `model/predictions/Sigmoid` [B, 101 * 96],
    the patch flattened: one output row per patch holds all of it."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 101, 96, 1], name="x")
        with tf.name_scope("model/predictions"):
            tf.reshape(x, [-1, 101 * 96], name="Sigmoid")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


def patches_2d(path: str, patch_size: int = 4, dims: int = 128) -> None:
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, patch_size, dims], name="Placeholder")
        tf.reshape(x, [-1, patch_size * dims], name="Flatten")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    graphs = {
        "identity": identity,
        "identity-vggish": identity_vggish,
        "identity-effnet": identity_effnet,
        "identity-maest": identity_maest,
        "identity-tempocnn": identity_tempocnn,
        "identity-fsdsinet": identity_fsdsinet,
        "patches-2d": patches_2d,
    }
    graphs[kind](out)
