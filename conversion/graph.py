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
    sinks = [_named_output(info, s) for s in sinks]
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


def _named_output(info: GraphInfo, sink: str) -> str:
    """The Sigmoid/Softmax behind a sink that only renames it (Keras' trailing `Identity`, as in
    CREPE's graphs: Essentia reads `model/classifier/Sigmoid`), else the sink itself."""
    name = sink
    while info.nodes[name].op == "Identity" and info.data_inputs(name):
        name = tensor_node(info.data_inputs(name)[0])
    return name if info.nodes[name].op in _PREDICTION_OPS else sink


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


BATCH_MODES = ("auto", "dynamic", "keep")


def free_batch_dimension(graph_def: tf.compat.v1.GraphDef, inputs: list[str], mode: str = "auto") -> dict[str, int]:
    """Decide the batch (first) dimension of each input placeholder, in place.

    mode "auto" (the rule the conversion uses):
    - a batch of 1 or unknown becomes dynamic. Essentia's TF graphs with batch 1 (MAEST) and
      [None, ...] graphs convert to a dynamic-batch ONNX;
    - a fixed batch > 1 is KEPT. Such a graph is built for that batch (discogs-effnet-bs64-1 has
      64 baked into its reshapes and cannot run another batch), so the ONNX keeps it. The runtime
      reads it from the ONNX input and pads the last batch, and the conversion check runs at
      that batch.
    mode "dynamic" frees every batch; "keep" leaves every placeholder as it is (a batch of 1 stays 1).

    Returns {input: batch} for the inputs whose batch stays fixed.
    """
    if mode not in BATCH_MODES:
        raise ValueError(f"batch mode must be one of {BATCH_MODES}, not {mode!r}")
    fixed = {}
    for node in graph_def.node:
        if node.name in inputs and node.op == "Placeholder":
            shape = node.attr["shape"].shape
            if shape.unknown_rank or not shape.dim:
                continue
            size = shape.dim[0].size
            if mode == "keep" or (mode == "auto" and size > 1):
                if size > 0:
                    fixed[node.name] = size
                continue
            shape.dim[0].size = -1
    return fixed


# Nodes that call a function of the graph's library (a frozen TF2 SavedModel signature).
_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}


def function_calls(graph_def: tf.compat.v1.GraphDef) -> list[str]:
    """Top-level nodes that call a function of the graph's library."""
    library = {f.signature.name for f in graph_def.library.function}
    return [n.name for n in graph_def.node if n.op in _CALL_OPS or n.op in library]


def inline_functions(graph_def: tf.compat.v1.GraphDef, fetches: list[str]) -> tf.compat.v1.GraphDef:
    """The graph with every function call inlined (a new GraphDef; the argument is not changed).

    A TF2 SavedModel signature frozen to a GraphDef (discogs-effnet-bs64-1, the newer heads) can
    be a bare `Placeholder -> PartitionedCall` graph whose function library holds the whole
    network. tf2onnx leaves function inlining to grappler, whose meta optimizer skips graphs of
    fewer than 4 nodes: it then reports "Unsupported ops: PartitionedCall" and writes a model
    onnxruntime refuses. Here grappler's function optimizer runs alone with no minimum graph size.
    `fetches` are the tensors that must stay (inputs and outputs): a call node that is fetched is
    kept as an IdentityN of the inlined body's results under its own name, so `PartitionedCall:1`
    still names the second output.
    """
    if not function_calls(graph_def):
        return graph_def
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    meta_graph.collection_def["train_op"].node_list.value.extend(tensor_name(f) for f in fetches)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.min_graph_nodes = -1  # never skip a graph for being small
    rewrite.optimizers.append("function")
    inlined = tf_optimizer.OptimizeGraph(config, meta_graph)
    left = function_calls(inlined)
    if left:
        raise ValueError(f"could not inline the function calls {', '.join(left)}")
    return inlined
