"""Reading and preparing an Essentia frozen GraphDef for conversion.

Everything here works on the protobuf only (no session), so it is cheap and testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import types_pb2

# Ops that end a graph but are never a model output worth keeping.
_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Shape", "Assert"}
_PREDICTION_OPS = {"Sigmoid", "Softmax"}


def load_graph_def(path: str | Path) -> tf.compat.v1.GraphDef:
    """Parse a frozen GraphDef (.pb); a clear error when the file is not one."""
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, sometimes RuntimeWarning
        raise ValueError(f"{path}: not a TensorFlow frozen graph (.pb): {exc}") from exc
    if not graph_def.node:
        raise ValueError(f"{path}: not a TensorFlow frozen graph (.pb): it has no nodes")
    return graph_def


def tensor_node(name: str) -> str:
    """'model/Sigmoid:0' -> 'model/Sigmoid'."""
    return name.lstrip("^").split(":")[0]


def tensor_name(name: str) -> str:
    """'model/Sigmoid' -> 'model/Sigmoid:0' (names with an index are kept)."""
    return name if ":" in name else f"{name}:0"


@dataclass
class GraphInfo:
    nodes: dict  # name -> NodeDef
    consumers: dict  # name -> list of consuming node names

    @classmethod
    def of(cls, graph_def: tf.compat.v1.GraphDef) -> GraphInfo:
        nodes = {n.name: n for n in graph_def.node}
        consumers: dict[str, list[str]] = {name: [] for name in nodes}
        for n in graph_def.node:
            for i in n.input:
                consumers.setdefault(tensor_node(i), []).append(n.name)
        return cls(nodes, consumers)

    def data_inputs(self, name: str) -> list[str]:
        return [tensor_node(i) for i in self.nodes[name].input if not i.startswith("^")]

    def ancestors(self, names: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = [tensor_node(n) for n in names]
        while stack:
            name = stack.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            stack.extend(tensor_node(i) for i in self.nodes[name].input)
        return seen

    def placeholders(self) -> list:
        return [n for n in self.nodes.values() if n.op in ("Placeholder", "PlaceholderWithDefault")]


def is_bool_placeholder(node) -> bool:
    return node.op in ("Placeholder", "PlaceholderWithDefault") and node.attr["dtype"].type == types_pb2.DT_BOOL


def placeholder_shape(node) -> list[int] | None:
    shape = node.attr["shape"].shape
    if shape.unknown_rank:
        return None
    return [d.size for d in shape.dim]


def guess_outputs(info: GraphInfo) -> list[tuple[str, str]]:
    """Outputs worth keeping when no metadata says which: (node name, purpose).

    Predictions are the graph's Sigmoid/Softmax sinks; their dense layer's BiasAdd gives the
    logits; the first dense layer of the classifier stack (Essentia's `model/dense/BiasAdd`
    convention for MusiCNN-style graphs) gives the embeddings.
    """
    sinks = [n.name for n in info.nodes.values() if not info.consumers.get(n.name) and n.op not in _NOT_OUTPUTS]
    predictions = [s for s in sinks if info.nodes[s].op in _PREDICTION_OPS]
    if not predictions:
        return [(s, "") for s in sinks]
    outputs = [(p, "predictions") for p in predictions]
    dense_chain = _dense_chain(info, info.data_inputs(predictions[0])[0])
    if dense_chain:
        outputs.append((dense_chain[0], ""))  # logits
    if len(dense_chain) > 1:
        outputs.append((dense_chain[-1], "embeddings"))
    return outputs


def _dense_chain(info: GraphInfo, start: str) -> list[str]:
    """BiasAdd nodes fed by MatMul, walking up from `start` towards the input (nearest first)."""
    chain, stack, seen = [], [start], set()
    while stack:
        name = stack.pop()
        if name in seen or name not in info.nodes:
            continue
        seen.add(name)
        node = info.nodes[name]
        if node.op in ("Conv2D", "Placeholder"):
            continue  # past the dense stack
        if node.op == "BiasAdd" and info.nodes[info.data_inputs(name)[0]].op == "MatMul":
            chain.append(name)
        stack.extend(info.data_inputs(name))
    return chain


def guess_inputs(info: GraphInfo, outputs: list[str]) -> list[str]:
    """Float placeholders the requested outputs depend on."""
    needed = info.ancestors(outputs)
    return [n.name for n in info.placeholders() if n.name in needed and not is_bool_placeholder(n)]


def fold_training_flags(graph_def: tf.compat.v1.GraphDef) -> list[str]:
    """Replace every boolean placeholder (the is-training input) by the constant False, in place.

    With the flag constant, TensorFlow's optimiser removes the Switch/Merge branches before
    tf2onnx sees them, so the ONNX graph has no `If` nodes and can be fused.
    """
    folded = []
    for node in graph_def.node:
        if not is_bool_placeholder(node):
            continue
        node.op = "Const"
        del node.input[:]
        for key in list(node.attr):
            del node.attr[key]
        node.attr["dtype"].type = types_pb2.DT_BOOL
        node.attr["value"].tensor.dtype = types_pb2.DT_BOOL
        node.attr["value"].tensor.bool_val.append(False)
        node.attr["value"].tensor.tensor_shape.SetInParent()
        folded.append(node.name)
    return folded


def free_batch_dimension(graph_def: tf.compat.v1.GraphDef, inputs: list[str]) -> None:
    """Make the first dimension of each input placeholder unknown, in place (dynamic batch)."""
    for node in graph_def.node:
        if node.name in inputs and node.op == "Placeholder":
            dims = node.attr["shape"].shape.dim
            if dims:
                dims[0].size = -1
