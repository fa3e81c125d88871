"""Essentia frozen graph (.pb) -> ONNX, checked against TensorFlow on the same input."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from conversion.graph import (
    GraphInfo,
    fold_training_flags,
    free_batch_dimension,
    guess_inputs,
    guess_outputs,
    inline_functions,
    is_bool_placeholder,
    load_graph_def,
    placeholder_shape,
    tensor_name,
    tensor_node,
)
from conversion.optimize import optimize, split_frame_sharing
from conversion.staging import StagedFiles
from mirfeat.families import FAMILIES, Family, family_for_input

log = logging.getLogger("conversion")

OPSET = 17
MAX_ABS_DIFF = 1e-4
# Unknown non-batch dimensions (e.g. TempoCNN's time axis) get this size in the check.
_CHECK_FREE_DIM = 256
_CHECK_BATCH = 3


class ConversionError(RuntimeError):
    pass


@dataclass
class ConversionReport:
    onnx_path: Path
    json_path: Path
    inputs: dict[str, str]  # TF name -> ONNX name
    outputs: dict[str, str]
    folded_flags: list[str]
    fixed_batch: dict[str, int] = field(default_factory=dict)  # inputs whose batch stays fixed
    rewrites: dict[str, int] = field(default_factory=dict)
    frame_sharing: dict | None = None
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def read_metadata(pb_path: Path) -> dict | None:
    json_path = pb_path.with_suffix(".json")
    if not json_path.exists():
        return None
    return json.loads(json_path.read_text())


def _schema_names(metadata: dict, key: str) -> list[str]:
    return [entry["name"] for entry in metadata.get("schema", {}).get(key, [])]


def convert(
    pb_path: str | Path,
    onnx_path: str | Path | None = None,
    *,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    metadata: dict | None = None,
    check: bool = True,
    optimize_graph: bool = True,
    seed: int = 0,
    batch: str = "auto",
) -> ConversionReport:
    """Convert an Essentia frozen graph to ONNX and write its metadata JSON beside it.

    Inputs and outputs come, in order of preference, from the arguments, from the metadata
    (`metadata` or the JSON beside the .pb: every schema output is kept) or from the graph.
    Output names are kept as given, index and all (`PartitionedCall:1` is the call's second
    output; a name without one means output 0). Boolean placeholders are folded to False. Function calls (a
    frozen TF2 signature: `Placeholder -> PartitionedCall` plus a function library) are inlined
    first (`conversion.graph.inline_functions`).

    Batch dimension (`batch`, see `conversion.graph.free_batch_dimension`): with "auto" an input
    whose batch is 1 or unknown gets a dynamic batch, and a fixed batch > 1 (discogs-effnet-bs64:
    64) is kept in the ONNX input, where the runtime reads it. "dynamic" frees every batch;
    "keep" keeps every placeholder's batch as it is.

    With `check`, TensorFlow (on the graph as given, function calls and all) and onnxruntime run
    on the same random batch (_CHECK_BATCH rows, or the fixed batch) and a difference above 1e-4
    raises ConversionError. `optimize_graph` applies the exact rewrites of `conversion.optimize`
    (checked by the same comparison).
    """
    pb_path = Path(pb_path)
    onnx_path = Path(onnx_path) if onnx_path else pb_path.with_suffix(".onnx")
    graph_def = load_graph_def(pb_path)
    metadata = metadata if metadata is not None else read_metadata(pb_path)
    info = GraphInfo.of(graph_def)

    purposes: dict[str, str] = {}
    if outputs is None and metadata and metadata.get("schema", {}).get("outputs"):
        outputs = _schema_names(metadata, "outputs")
        purposes = {o["name"]: o.get("output_purpose", "") for o in metadata["schema"]["outputs"]}
    if outputs is None:
        guessed = guess_outputs(info)
        guessed += family_embeddings(info, guessed)
        outputs = [name for name, _ in guessed]
        purposes = dict(guessed)
    outputs = list(outputs)  # names as given: 'X:1' is X's second output, 'X' and 'X:0' its first
    if inputs is None and metadata and metadata.get("schema", {}).get("inputs"):
        inputs = _schema_names(metadata, "inputs")
    if inputs is None:
        inputs = guess_inputs(info, [tensor_node(o) for o in outputs])
    inputs = [tensor_node(i) for i in inputs]
    missing = [tensor_node(n) for n in inputs + outputs if tensor_node(n) not in info.nodes]
    if missing:
        raise ConversionError(f"{pb_path}: the graph has no node named {', '.join(missing)}")
    if not inputs or not outputs:
        raise ConversionError(f"{pb_path}: could not tell the graph's inputs and outputs; name them")

    folded = fold_training_flags(graph_def)
    fixed_batch = free_batch_dimension(graph_def, inputs, batch)
    input_shapes = {name: placeholder_shape(info.nodes[name]) for name in inputs}
    flat_graph_def = inline_functions(graph_def, inputs + outputs)

    log.info("converting %s: inputs %s, outputs %s, folded %s", pb_path.name, inputs, outputs, folded)
    # tf2onnx otherwise deep-copies the whole graph before each of its optimisers, so that a failing
    # one can be skipped: minutes and gigabytes on a 300 MB VGGish. A failure should be loud anyway.
    os.environ.setdefault("TF2ONNX_CATCH_ERRORS", "FALSE")
    model_proto, _ = tf2onnx.convert.from_graph_def(
        flat_graph_def,
        input_names=[tensor_name(i) for i in inputs],
        output_names=[tensor_name(o) for o in outputs],
        opset=OPSET,
    )
    model_proto.doc_string = (
        f"Converted from {pb_path.name} by mirfeat's conversion step (tf2onnx {tf2onnx.__version__})"
    )
    rewrites = optimize(model_proto) if optimize_graph else {}
    onnx.checker.check_model(model_proto)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)

    report = ConversionReport(
        onnx_path=onnx_path,
        json_path=onnx_path.with_suffix(".json"),
        inputs={i: tensor_name(i) for i in inputs},
        outputs={o: tensor_name(o) for o in outputs},
        folded_flags=folded,
        fixed_batch=fixed_batch,
        rewrites=rewrites,
    )
    # Every file is written under a temporary name beside its own and renamed into place only once
    # the checks pass, the JSON last: a failed conversion leaves no unchecked .onnx behind, and
    # files from an earlier conversion (which a JSON beside them would vouch for) as they were.
    with StagedFiles() as staged:
        onnx.save(model_proto, str(staged.add(onnx_path)))
        if check:
            report.max_abs_diff = check_against_tensorflow(
                graph_def, staged.temporary(onnx_path), input_shapes, outputs, seed
            )
            worst = max(report.max_abs_diff.values())
            if not np.isfinite(worst) or worst > MAX_ABS_DIFF:
                raise ConversionError(
                    f"{pb_path}: ONNX differs from TensorFlow by {worst:.3g} (limit {MAX_ABS_DIFF}): "
                    f"{report.max_abs_diff}"
                )
        if optimize_graph:
            report.frame_sharing = write_frame_sharing(model_proto, onnx_path, inputs[0], seed, staged)
        write_metadata(report, metadata, pb_path, input_shapes, purposes, staged.add(report.json_path))
    return report


def _check_input(shape: list[int] | None, rng: np.random.Generator) -> np.ndarray:
    if shape is None:
        raise ConversionError("an input has unknown rank; cannot build a check input")
    # A fixed batch (kept by free_batch_dimension) is the only batch such a graph runs.
    batch = shape[0] if shape and shape[0] > 0 else _CHECK_BATCH
    dims = [batch] + [d if d > 0 else _CHECK_FREE_DIM for d in shape[1:]]
    # Log-compressed spectrogram-like magnitudes: non-negative, a few units at most.
    return rng.uniform(0.0, 3.0, size=dims).astype(np.float32)


def check_against_tensorflow(
    graph_def, onnx_path: Path, input_shapes: dict, outputs: list[str], seed: int
) -> dict[str, float]:
    """Max abs difference per output between TensorFlow and onnxruntime on one random batch."""
    rng = np.random.default_rng(seed)
    feeds = {name: _check_input(shape, rng) for name, shape in input_shapes.items()}

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        expected = session.run([tensor_name(o) for o in outputs], {tensor_name(k): v for k, v in feeds.items()})

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([tensor_name(o) for o in outputs], {tensor_name(k): v for k, v in feeds.items()})
    return {
        o: float(np.max(np.abs(np.asarray(e, np.float64) - np.asarray(g, np.float64)), initial=0.0))
        for o, e, g in zip(outputs, expected, got, strict=True)
    }


def write_frame_sharing(model_proto, onnx_path: Path, input_name: str, seed: int, staged: StagedFiles) -> dict | None:
    """Split the graph for `mirfeat.framesharing` when it has frame-local blocks, check that the
    split gives what the whole graph gives on overlapping patches, and stage both parts beside it
    (`staged`, which holds the whole graph, written)."""
    from mirfeat.framesharing import FrameSharing
    from mirfeat.patches import make_patches, patch_starts
    from mirfeat.runtime import Session

    dims = model_proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[1].dim_value or dims[0].dim_value:
        return None  # not [batch, frames, bands], or a fixed batch (the check below runs batches of 3)
    patch_frames = dims[1].dim_value
    split = split_frame_sharing(model_proto, patch_frames)
    if split is None:
        return None
    frames, rest, blocks, context = split
    frames_path = onnx_path.with_name(f"{onnx_path.stem}.frames.onnx")
    rest_path = onnx_path.with_name(f"{onnx_path.stem}.patch.onnx")
    onnx.save(frames, str(staged.add(frames_path)))
    onnx.save(rest, str(staged.add(rest_path)))

    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.0, 3.0, (4 * patch_frames + 7, dims[2].dim_value)).astype(np.float32)
    hop = patch_frames // 2
    patches = make_patches(bands, patch_frames, hop, "repeat")
    starts = patch_starts(len(bands), patch_frames, hop, "repeat")
    whole = Session(staged.temporary(onnx_path))
    outputs = whole.output_names
    parts = Session(staged.temporary(frames_path)), Session(staged.temporary(rest_path))
    sharing = FrameSharing(*parts, blocks, context, tensor_name(input_name))
    got = sharing.run(bands, patches, starts, outputs, batch_size=3)
    expected = whole.run(patches, outputs, tensor_name(input_name), batch_size=3)
    worst = max(float(np.abs(got[o] - expected[o]).max()) for o in outputs)
    if worst > 1e-5:
        log.warning("frame sharing differs from the whole graph by %.3g; not using it", worst)
        staged.drop(frames_path)
        staged.drop(rest_path)
        return None
    return {
        "frames_model": frames_path.name,
        "patch_model": rest_path.name,
        "blocks": blocks,
        "context": context,
        "check_max_abs_diff": worst,
    }


def guess_family(input_shapes: dict) -> Family:
    """The family whose wrapper feeds an input of this shape (mirfeat's family table); a graph
    that matches none is taken as Essentia's plain TensorflowPredict."""
    name, shape = next(iter(input_shapes.items()))
    return family_for_input(tuple((shape or [])[1:]), name) or FAMILIES["TensorflowPredict"]


def family_embeddings(info: GraphInfo, guessed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """[(name, "embeddings")] for the embeddings output the family table names for a graph of this
    input (FSD-SINet's `model/global_max_pooling1d/Max`, which is no sink of the graph), where the
    guess found none and the graph has that node; else []."""
    if any(purpose == "embeddings" for _, purpose in guessed):
        return []
    shapes = [placeholder_shape(n) for n in info.placeholders() if not is_bool_placeholder(n)]
    if len(shapes) != 1 or not shapes[0]:
        return []
    family = family_for_input(tuple(shapes[0][1:]))
    name = family.embeddings_name if family else None
    return [(name, "embeddings")] if name and tensor_node(name) in info.nodes else []


def write_metadata(
    report: ConversionReport,
    metadata: dict | None,
    pb_path: Path,
    input_shapes: dict,
    purposes: dict,
    path: Path | None = None,
) -> None:
    """Write the model's JSON (to `path`, default `report.json_path` beside the .onnx): Essentia's
    metadata plus a `mirfeat` section."""
    if metadata is None:
        family = guess_family(input_shapes)
        # A head's rate is its embedding model's, which the graph does not tell; 16 kHz is every
        # Essentia embedding model's.
        sample_rate = family.signature.sample_rate if family.signature else 16000
        metadata = {
            "name": pb_path.stem,
            "type": "",
            "classes": [],
            "schema": {
                "inputs": [
                    {"name": name, "type": "float", "shape": shape[1:] if shape else None}
                    for name, shape in input_shapes.items()
                ],
                "outputs": [{"name": name, "output_purpose": purposes.get(name, "")} for name in report.outputs],
            },
            "inference": {"sample_rate": sample_rate, "algorithm": family.algorithm},
        }
    else:
        metadata = json.loads(json.dumps(metadata))  # a copy we may edit
    metadata.setdefault("model_types", [])
    if "onnx" not in metadata["model_types"]:
        metadata["model_types"].append("onnx")
    metadata["mirfeat"] = {
        "converted_from": pb_path.name,
        "inputs": report.inputs,
        "outputs": report.outputs,
        "folded_training_flags": report.folded_flags,
        **({"fixed_batch": report.fixed_batch} if report.fixed_batch else {}),
        "graph_rewrites": report.rewrites,
        "check_max_abs_diff": report.max_abs_diff,
        "opset": OPSET,
    }
    if report.frame_sharing:
        metadata["mirfeat"]["frame_sharing"] = report.frame_sharing
    (path or report.json_path).write_text(json.dumps(metadata, indent=2) + "\n")
