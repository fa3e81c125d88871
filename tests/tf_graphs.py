"""Tiny TensorFlow graphs for tests, built in a separate process (TensorFlow and Essentia must
not share one): `python tests/tf_graphs.py identity|identity-vggish OUT.pb`.

The identity graph (`model/Placeholder` [B, T, F] -> `model/Identity`) makes Essentia's
TensorflowPredict* wrappers return the exact patches they would feed a model.
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


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    {"identity": identity, "identity-vggish": identity_vggish}[kind](out)
