"""Exact rewrites of converted ONNX graphs that onnxruntime does not do by itself.

`pool_before_batchnorm`: MusiCNN's front end runs Conv -> Relu -> BatchNormalization -> MaxPool,
the pool spanning the whole frequency axis. onnxruntime executes that BatchNormalization as a
depthwise convolution over the full conv output (about a fifth of MusiCNN's run time) although
only one value per channel and time step survives the pool. An inference BatchNormalization is a
per-channel affine map x * s + t, monotonic in x; Relu is monotonic too. So, per channel:

    max_f BN(Relu(z)) = BN(Relu(max_f z))        where s > 0
    max_f BN(Relu(z)) = BN(Relu(-max_f(-z)))     where s < 0 (the max of BN is at the min of z)

and -z is the same Conv with that channel's weights and bias negated. The rewrite is

    Conv(W * sign, b * sign) -> MaxPool -> Mul(sign) -> Relu -> BatchNormalization

which applies Relu and the affine map to the pooled values only. The identities hold in floating
point too (negation is exact, rounding is monotonic); what differs is only how onnxruntime's
kernels order their arithmetic once Relu and BatchNormalization are no longer fused into the
convolution (float32 rounding, ~1e-7 on MusiCNN's sigmoid outputs).

`squeeze_excitation_upsample`: EfficientNet's squeeze-excitation multiplies each block's
activations x [N, C, H, W] by per-channel scales s [N, C, 1, 1]. onnxruntime's blocked (NCHWc)
layout does not take that broadcast Mul, nor the identity Reshapes ([N, C, 1, 1] -> [-1, C, 1, 1])
tf2onnx leaves around the squeeze, so every block reorders its activations out of the blocked
layout, multiplies, and reorders them back. The rewrite drops identity Reshapes and writes the
product as x * Resize(s, nearest, scales [1, 1, H, W]): nearest upsampling of a 1x1 map only copies
it, so the products are the same numbers, and onnxruntime keeps the Resize (as NchwcUpsample) and
the Mul in the blocked layout (5-10% of EffNet-Discogs' inference on AVX-512).

`conv_1d`: CREPE convolves along time only: (k, 1) kernels over a [B, C, T, 1] tensor. onnxruntime
runs such a 2-D Conv in its blocked NCHWc direct kernel, which is slow for a width of 1 (CREPE's
first two convolutions: ~90% of its run time); a 1-D Conv over [B, C, T] goes to im2col + GEMM
instead (conv1-conv3 1.5x faster). The rewrite is Squeeze(axis 3) -> Conv (the same weights
without their last axis) -> Unsqueeze(axis 3): the same products and sums, in another order.
Only where the output has at least CONV_1D_MIN_POSITIONS time steps: on short ones (CREPE's
conv4-conv6: 32, 16, 8 steps under a 64-tap kernel, mostly padding) the blocked kernel is faster.

`affine_as_batchnorm`: TempoCNN's batch norms come after the Relu, frozen as Mul(x, s) -> Add(., t)
with [1, C, 1, 1] constants. onnxruntime runs those two outside its blocked NCHWc layout, so every
block reorders the conv output out of it and back (a third of TempoCNN's run time). Written as
BatchNormalization(scale s, bias t, mean 0, variance 1, epsilon 0), which computes x * s + t, the
pair stays in the blocked layout (TempoCNN 1.45x faster, outputs bitwise equal here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

CHANNEL_BLOCK = 16  # onnxruntime's NCHWc block on AVX-512 (8 on AVX2 divides it)
CONV_1D_MIN_POSITIONS = 64  # output time steps from which a 1-D Conv beats the 2-D one (measured on CREPE)


def _attribute(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _batchnorm_scale(node, constants) -> np.ndarray | None:
    """Per-channel scale of an inference BatchNormalization with constant parameters, else None."""
    if len(node.input) != 5 or len(node.output) != 1 or not all(i in constants for i in node.input[1:]):
        return None
    gamma, _, _, var = (constants[i].astype(np.float64) for i in node.input[1:])
    return gamma / np.sqrt(var + _attribute(node, "epsilon", 1e-5))


def _plain_max_pool(node) -> bool:
    return (
        len(node.output) == 1
        and _attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET", b"VALID", "VALID")
        and not any(_attribute(node, "pads", []))
        and all(d == 1 for d in _attribute(node, "dilations", []))
        and _attribute(node, "ceil_mode", 0) == 0
    )


class _Graph:
    def __init__(self, graph):
        self.graph = graph
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def set_constant(self, name: str, value: np.ndarray) -> None:
        for i, init in enumerate(self.graph.initializer):
            if init.name == name:
                self.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
                break
        else:
            self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value


Rewrite = Callable[[onnx.ModelProto], int]


def _tidied(*, appends_nodes: bool) -> Callable[[Rewrite], Rewrite]:
    """A rewrite (changes a model in place, returns how many places it rewrote), made to leave a
    valid graph behind on its own: where it rewrote any, initializers no node reads any more are
    dropped, and with `appends_nodes` (its new nodes went to the end of the node list) the nodes are
    put back in topological order first."""

    def wrap(rewrite: Rewrite) -> Rewrite:
        @functools.wraps(rewrite)
        def tidied(model: onnx.ModelProto) -> int:
            rewritten = rewrite(model)
            if rewritten:
                if appends_nodes:
                    _sort_topologically(model.graph)
                _drop_unused_initializers(model.graph)
            return rewritten

        return tidied

    return wrap


@_tidied(appends_nodes=True)
def pool_before_batchnorm(model: onnx.ModelProto) -> int:
    """Rewrite Conv -> Relu -> BatchNormalization -> MaxPool as described above; in place.

    Returns how many blocks were rewritten.
    """
    g = _Graph(model.graph)
    rewritten = 0
    for conv in list(model.graph.node):
        if conv.op_type != "Conv" or _attribute(conv, "group", 1) != 1 or conv.input[1] not in g.constants:
            continue
        relu = g.only_consumer(conv.output[0])
        norm = relu and relu.op_type == "Relu" and g.only_consumer(relu.output[0])
        pool = norm and norm.op_type == "BatchNormalization" and g.only_consumer(norm.output[0])
        if not pool or pool.op_type != "MaxPool" or not _plain_max_pool(pool):
            continue
        scale = _batchnorm_scale(norm, g.constants)
        if scale is None or len(conv.input) > 2 and conv.input[2] not in g.constants:
            continue
        weights = g.constants[conv.input[1]]
        channels = weights.shape[0]
        sign = np.where(scale < 0, -1.0, 1.0).astype(weights.dtype)
        # Zero filters up to a multiple of the CPU's channel block keep the pool in onnxruntime's
        # blocked layout (no reorder of the full conv output); the pooled result is sliced back.
        extra = -channels % CHANNEL_BLOCK
        signed = weights * sign.reshape(-1, *([1] * (weights.ndim - 1)))
        signed = np.concatenate([signed, np.zeros((extra, *weights.shape[1:]), weights.dtype)])
        # Private copies: another node may share these initializers.
        w_name = f"{conv.input[1]}__signed"
        g.set_constant(w_name, signed)
        conv.input[1] = w_name
        if len(conv.input) > 2:
            b_name = f"{conv.input[2]}__signed"
            g.set_constant(b_name, np.concatenate([g.constants[conv.input[2]] * sign, np.zeros(extra, sign.dtype)]))
            conv.input[2] = b_name
        prefix = norm.name or norm.output[0]
        g.set_constant(f"{prefix}__sign", sign.reshape(1, -1, *([1] * (weights.ndim - 2))))
        g.set_constant(f"{prefix}__slice_starts", np.array([0], np.int64))
        g.set_constant(f"{prefix}__slice_ends", np.array([channels], np.int64))
        g.set_constant(f"{prefix}__slice_axes", np.array([1], np.int64))

        pooled_out = pool.output[0]
        pool.input[0] = conv.output[0]
        pool.output[0] = f"{pooled_out}__signed_max_padded"
        crop = onnx.helper.make_node(
            "Slice",
            [pool.output[0], f"{prefix}__slice_starts", f"{prefix}__slice_ends", f"{prefix}__slice_axes"],
            [f"{pooled_out}__signed_max"],
        )
        flip = onnx.helper.make_node("Mul", [crop.output[0], f"{prefix}__sign"], [f"{pooled_out}__max"])
        relu.input[0] = flip.output[0]
        relu.output[0] = f"{pooled_out}__relu"
        norm.input[0] = relu.output[0]
        norm.output[0] = pooled_out
        model.graph.node.extend([crop, flip])
        rewritten += 1
    return rewritten


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _sort_topologically(graph) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle after rewriting")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every tensor's shape as far as ONNX shape inference knows it (None: unknown dimension)."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    return {
        value.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
        for value in [*inferred.input, *inferred.value_info, *inferred.output]
        if value.type.tensor_type.HasField("shape")
    }


@_tidied(appends_nodes=True)
def conv_1d(model: onnx.ModelProto) -> int:
    """Rewrite 2-D Convs along time only ((k, 1) kernels on a width of 1) as 1-D Convs, as
    described above; in place. Returns how many Convs were rewritten."""
    g = _Graph(model.graph)
    shapes = _static_shapes(model)
    axes = "conv_1d__axes"
    rewritten = 0
    for conv in list(model.graph.node):
        if conv.op_type != "Conv" or conv.input[1] not in g.constants:
            continue
        weights = g.constants[conv.input[1]]
        in_shape, out_shape = shapes.get(conv.input[0]), shapes.get(conv.output[0])
        if weights.ndim != 4 or weights.shape[3] != 1 or not in_shape or not out_shape:
            continue
        if len(in_shape) != 4 or in_shape[3] != 1 or (out_shape[2] or 0) < CONV_1D_MIN_POSITIONS:
            continue
        if _attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        pads = list(_attribute(conv, "pads", [0, 0, 0, 0]))
        strides = list(_attribute(conv, "strides", [1, 1]))
        dilations = list(_attribute(conv, "dilations", [1, 1]))
        group = _attribute(conv, "group", 1)
        if pads[1] or pads[3] or strides[1] != 1 or dilations[1] != 1:
            continue
        w_name = f"{conv.input[1]}__1d"  # a private copy: another node may share the initializer
        g.set_constant(w_name, weights[..., 0])
        if axes not in g.constants:
            g.set_constant(axes, np.array([3], np.int64))
        out = conv.output[0]
        squeeze = onnx.helper.make_node("Squeeze", [conv.input[0], axes], [f"{out}__1d_input"])
        unsqueeze = onnx.helper.make_node("Unsqueeze", [f"{out}__1d", axes], [out])
        conv.input[0], conv.input[1], conv.output[0] = squeeze.output[0], w_name, f"{out}__1d"
        del conv.attribute[:]
        conv.attribute.extend(
            [
                onnx.helper.make_attribute("kernel_shape", [int(weights.shape[2])]),
                onnx.helper.make_attribute("pads", [pads[0], pads[2]]),
                onnx.helper.make_attribute("strides", [strides[0]]),
                onnx.helper.make_attribute("dilations", [dilations[0]]),
                onnx.helper.make_attribute("group", group),
            ]
        )
        model.graph.node.extend([squeeze, unsqueeze])
        rewritten += 1
    return rewritten


@_tidied(appends_nodes=False)  # each BatchNormalization takes its Mul's place
def affine_as_batchnorm(model: onnx.ModelProto) -> int:
    """Rewrite Mul(x, s) -> Add(., t) with per-channel constants on a 4-D x as one
    BatchNormalization, as described above; in place. Returns how many pairs were rewritten."""
    g = _Graph(model.graph)
    shapes = _static_shapes(model)
    rewritten = 0
    for mul in list(model.graph.node):
        if mul.op_type != "Mul" or mul.input[1] not in g.constants:
            continue
        add = g.only_consumer(mul.output[0])
        if add is None or add.op_type != "Add" or add.input[0] != mul.output[0] or add.input[1] not in g.constants:
            continue
        scale, shift = g.constants[mul.input[1]], g.constants[add.input[1]]
        x_shape = shapes.get(mul.input[0])
        channels = x_shape[1] if x_shape and len(x_shape) == 4 else None
        per_channel = (1, channels, 1, 1)
        if not channels or scale.shape != per_channel or shift.shape != per_channel or scale.dtype != np.float32:
            continue
        prefix = f"{add.output[0]}__batchnorm"
        g.set_constant(f"{prefix}_scale", scale.reshape(-1))
        g.set_constant(f"{prefix}_bias", shift.reshape(-1).astype(np.float32))
        g.set_constant(f"{prefix}_mean", np.zeros(channels, np.float32))
        g.set_constant(f"{prefix}_var", np.ones(channels, np.float32))
        norm = onnx.helper.make_node(
            "BatchNormalization",
            [mul.input[0], *(f"{prefix}_{name}" for name in ("scale", "bias", "mean", "var"))],
            [add.output[0]],
            epsilon=0.0,
        )
        model.graph.node.insert(list(model.graph.node).index(mul), norm)
        model.graph.node.remove(mul)
        model.graph.node.remove(add)
        rewritten += 1
    return rewritten


def _drop_identity_reshapes(model: onnx.ModelProto) -> int:
    """Remove Reshapes whose target is their input's shape (a -1 or 0 batch for the same batch)."""
    graph, dropped = model.graph, 0
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    known = _static_shapes(model)
    for node in list(graph.node):
        if node.op_type != "Reshape" or node.input[1] not in constants or node.output[0] in outputs:
            continue
        source, target = known.get(node.input[0]), constants[node.input[1]].tolist()
        if not source or len(source) != len(target) or None in source[1:] or source[1:] != target[1:]:
            continue
        if source[0] == target[0] or target[0] in (-1, 0):
            for other in graph.node:
                other.input[:] = [node.input[0] if name == node.output[0] else name for name in other.input]
            graph.node.remove(node)
            dropped += 1
    return dropped


@_tidied(appends_nodes=False)  # each Resize goes before its Mul; drops the dropped Reshapes' shapes
def squeeze_excitation_upsample(model: onnx.ModelProto) -> int:
    """Rewrite x [N, C, H, W] * s [N, C, 1, 1] (s computed, not a constant) as described above; in
    place. Returns how many products were rewritten (none: the graph is left as it was)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    _drop_identity_reshapes(probe)
    graph = probe.graph
    constants = {i.name for i in graph.initializer}
    known = _static_shapes(probe)
    upsampled: list[tuple[str, str]] = []
    for node in list(graph.node):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for x, s in (tuple(node.input), tuple(reversed(node.input))):
            xs, ss = known.get(x), known.get(s)
            if s in constants or not xs or not ss or len(xs) != 4 or len(ss) != 4:
                continue
            if ss[2:] != [1, 1] or xs[2:] == [1, 1] or None in xs[1:] or xs[1] != ss[1]:
                continue
            scales = f"{node.name or x}__se_scales"
            graph.initializer.append(numpy_helper.from_array(np.array([1, 1, *xs[2:]], np.float32), scales))
            up = onnx.helper.make_node(
                "Resize",
                [s, "", scales],
                [f"{s}__se_upsampled"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
            graph.node.insert(list(graph.node).index(node), up)
            node.input[:] = [x, up.output[0]]
            upsampled.append((up.output[0], x))
            break
    if not upsampled:
        return 0
    # Re-inferred value_info makes a dynamic batch one symbol throughout (else onnxruntime cannot
    # prove the Mul's inputs have the same shape); shape inference cannot carry a symbolic batch
    # through Resize, so the upsampled scales take x's.
    del graph.value_info[:]
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.value_info}
    for out, x in upsampled:
        if x not in inferred:
            continue
        info = onnx.ValueInfoProto()
        info.CopyFrom(inferred[x])
        info.name = out
        inferred[out] = info
    graph.value_info.extend(inferred.values())
    model.CopyFrom(probe)
    return len(upsampled)


def optimize(model: onnx.ModelProto) -> dict[str, int]:
    """Every exact rewrite above; returns what each changed. conv_1d runs last: the other
    rewrites match Conv -> Relu, which its Unsqueeze would hide."""
    rewrites = {"pool_before_batchnorm": pool_before_batchnorm(model)}
    rewrites["affine_as_batchnorm"] = affine_as_batchnorm(model)
    rewrites["squeeze_excitation_upsample"] = squeeze_excitation_upsample(model)
    rewrites["conv_1d"] = conv_1d(model)
    return rewrites


# --- Sharing frame-local work between overlapping patches -------------------------------------

_PER_FRAME_OPS = {"Unsqueeze", "Reshape", "BatchNormalization"}
_MAX_LOCAL_KERNEL = 15


def _local_block_outputs(model: onnx.ModelProto) -> tuple[list[str], int]:
    """Outputs of rewritten pool blocks whose Conv sees only a few frames either side.

    Returns (block outputs, context in frames). Such an output at frame t depends on input frames
    t - context .. t + context only, so inside a patch it equals the same block run on the whole
    spectrogram, except within `context` frames of the patch's edges (where the patch's own zero
    padding is seen).
    """
    g = _Graph(model.graph)
    graph_input = model.graph.input[0].name
    outputs, context = [], 0
    for conv in model.graph.node:
        if conv.op_type != "Conv":
            continue
        kernel = _attribute(conv, "kernel_shape", [])
        pads = _attribute(conv, "pads", [])
        k = kernel[0] if kernel else 0
        if not (0 < k <= _MAX_LOCAL_KERNEL and k % 2 == 1 and list(pads) == [k // 2, 0, k // 2, 0]):
            continue
        if any(s != 1 for s in _attribute(conv, "strides", [1, 1])):
            continue
        # The conv's input must come from the graph input through per-frame ops only.
        source, ok = conv.input[0], True
        while source != graph_input:
            producer = g.producers.get(source)
            if producer is None or producer.op_type not in _PER_FRAME_OPS:
                ok = False
                break
            source = producer.input[0]
        # ... and its output must end in the rewritten pool -> Slice -> Mul -> Relu -> BatchNormalization.
        node, chain = conv, ["MaxPool", "Slice", "Mul", "Relu", "BatchNormalization"]
        for op in chain:
            node = ok and g.only_consumer(node.output[0])
            if not node or node.op_type != op:
                ok = False
                break
        if ok:
            outputs.append(node.output[0])
            context = max(context, k // 2)
    return outputs, context


def split_frame_sharing(model: onnx.ModelProto, patch_frames: int):
    """Split a graph into a per-frame part (dynamic length) and the rest, or None when it has no
    frame-local blocks. The runtime runs the per-frame part once over a whole spectrogram instead
    of once per overlapping patch (MusiCNN's timbral convolutions: ~75% of its compute)."""
    from onnx.utils import Extractor

    blocks, context = _local_block_outputs(model)
    if not blocks:
        return None
    graph_input = model.graph.input[0].name
    inferred = onnx.shape_inference.infer_shapes(model)
    extractor = Extractor(inferred)
    frames = extractor.extract_model([graph_input], blocks)
    rest = extractor.extract_model([graph_input, *blocks], [o.name for o in model.graph.output])
    # The per-frame part takes any number of frames: free the time axis of its input and reshapes.
    frames.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "frames"
    for init in frames.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype == np.int64 and value.ndim == 1 and patch_frames in value.tolist() and value[0] == -1:
            fixed = value.copy()
            fixed[0], fixed[list(value).index(patch_frames)] = 0, -1
            init.CopyFrom(numpy_helper.from_array(fixed, init.name))
    for value_info in [*frames.graph.output, *frames.graph.value_info]:
        for dim in value_info.type.tensor_type.shape.dim:
            if dim.dim_value == patch_frames:
                dim.dim_param = "frames"
    del frames.graph.value_info[:]
    return frames, rest, blocks, context
