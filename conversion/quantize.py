"""int8 copies of converted audio models: onnxruntime static quantization, calibrated on audio.

`quantize(MODEL.onnx)` writes `MODEL.int8.onnx` beside it (and `MODEL.frames.int8.onnx`,
`MODEL.patch.int8.onnx` for a model with frame sharing), which `load_model(..., precision="int8")`
opens instead of the float32 graphs. The quantization is static QDQ: weights per output channel
(int8, symmetric), activations per tensor (uint8, asymmetric), with activation ranges measured
by running the float32 model on calibration audio through the model's own input signature
(decode -> bands -> patches, exactly as inference feeds it): the recordings of a directory plus
synthetic signals (a sine sweep, noise, a click train, a chord, near-silence), so that the ranges
cover loud, quiet, tonal and noisy inputs. Only the ops that carry the compute are quantized
(Conv, MatMul, Gemm by default); the rest runs in float32 between QuantizeLinear/DequantizeLinear
pairs, which onnxruntime fuses into its int8 kernels (VNNI on AVX-512 CPUs).

Convolutions with few taps per output (`MIN_CONV_TAPS`: input channels per group x kernel area)
stay float32: onnxruntime's int8 convolution pays an im2col and a requantisation per output, and
measured per node on MusiCNN (batch 16, AVX-512 VNNI) its temporal filters over one channel
(128x1, 64x1, 32x1) ran 2.5-3.5x slower in int8, while the 7x38 and 7x67 timbral filters ran
2.7-3.4x faster. The same rule keeps depthwise convolutions and first layers over one channel in
float32.

Each int8 graph is then run beside its float32 graph on a few of the calibration batches
(`COMPARED_BATCHES`): the largest and mean absolute difference of every output go in the report,
and a NaN or inf int8 output is an error. The graphs are renamed into place only after that: a
failed step leaves no int8 file behind and an earlier one as it was.

Heads (TensorflowPredict2D) are not quantized: they are a few small dense layers on embeddings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from conversion.staging import StagedFiles
from mirfeat.audio import load_audio
from mirfeat.framesharing import part_files
from mirfeat.model import Model, int8_path, load_model
from mirfeat.patches import patch_batches
from mirfeat.runner import AUDIO_EXTENSIONS
from mirfeat.runtime import RunOptions

log = logging.getLogger(__name__)

DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
AUDIO_SUFFIXES = AUDIO_EXTENSIONS  # what `mirfeat run` reads from a directory
CALIBRATION_SECONDS = 30.0  # per signal: enough patches per recording, bounded calibration time
MIN_CONV_TAPS = 256  # see above
MAX_CALIBRATION_PATCHES = 256  # in all; activation ranges settle long before (min/max over patches)
COMPARED_BATCHES = 4  # calibration batches, spread over the signals, that int8 is compared with float32 on


class QuantizationError(Exception):
    """A model that cannot be quantized, named in the message."""


@dataclass
class Int8Difference:
    """int8 against float32 on one output of one written graph, over `COMPARED_BATCHES` calibration
    batches: the largest and the mean absolute difference, in the output's units (the model's
    outputs for the whole graph and the patch part; the shared blocks for the frames part)."""

    graph: str  # the int8 file's name
    output: str
    max_abs: float
    mean_abs: float


@dataclass
class QuantizeReport:
    """What `quantize` wrote. written: int8 files; float_convs: Convs kept in float32 (few taps, all
    graphs); patches: calibration patches fed; signals: the calibration signals by name;
    differences: each written graph's outputs against float32 (`Int8Difference`); seconds: wall
    time of the whole step."""

    written: list[Path] = field(default_factory=list)
    float_convs: int = 0
    patches: int = 0
    signals: list[str] = field(default_factory=list)
    differences: list[Int8Difference] = field(default_factory=list)
    seconds: float = 0.0


def synthetic_signals(sample_rate: int, seconds: float = 10.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Signals that stretch activation ranges the recordings may not reach, mono float32 [samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0, f1 = 30.0, sample_rate / 2 * 0.9
    sweep = np.sin(2 * np.pi * f0 * seconds / np.log(f1 / f0) * (np.exp(t / seconds * np.log(f1 / f0)) - 1))
    clicks = np.zeros_like(t)
    clicks[:: sample_rate // 4] = 1.0
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0)) / 4
    signals = {
        "sweep": 0.9 * sweep,
        "white noise": 0.3 * rng.standard_normal(len(t)),
        "clicks": clicks,
        "chord": 0.5 * chord,
        "near silence": 1e-4 * rng.standard_normal(len(t)),
    }
    return {name: s.astype(np.float32) for name, s in signals.items()}


def calibration_signals(sample_rate: int, directory: Path | None) -> dict[str, np.ndarray]:
    """The recordings of `directory` (first `CALIBRATION_SECONDS` of each) and the synthetic signals."""
    signals: dict[str, np.ndarray] = {}
    if directory is not None:
        if not directory.is_dir():
            raise QuantizationError(f"{directory}: no such calibration directory")
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                signals[path.name] = load_audio(path, sample_rate)[: int(CALIBRATION_SECONDS * sample_rate)]
    signals.update(synthetic_signals(sample_rate))
    return signals


class _FeedsReader(CalibrationDataReader):
    """onnxruntime's calibration interface over a list of feeds {input name: array}."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = feeds
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)


@dataclass
class _Calibration:
    """Feeds for each graph to quantize: whole graph, and the frame-sharing parts where present."""

    whole: list[dict[str, np.ndarray]] = field(default_factory=list)
    frames: list[dict[str, np.ndarray]] = field(default_factory=list)
    patch: list[dict[str, np.ndarray]] = field(default_factory=list)
    patches: int = 0


def _calibration_feeds(model: Model, signals: dict[str, np.ndarray], max_patches: int) -> _Calibration:
    """Run each signal through the model's signature and collect what every graph is fed."""
    calibration = _Calibration()
    per_signal = max(1, max_patches // max(len(signals), 1))
    sharing = model.frame_sharing
    fixed = model.graph.session.fixed_batch
    for samples in signals.values():
        bands = model.family.bands(samples)
        # A signal shorter than a patch gives one patch, as last_patch_mode="repeat" cuts it.
        mode = "repeat" if len(bands) < model.patch_size else "discard"
        batches = patch_batches([bands], model.patch_size, model.patch_hop_size, mode, model.batch_size, per_signal)
        for batch in batches:
            rows = model.graph.fit_to_input(model.family.model_input(batch.patches))
            if fixed and len(rows) != fixed:  # a fixed-batch graph (bs64): repeat rows, adding no new values
                rows = np.resize(rows, (fixed, *rows.shape[1:]))
            calibration.whole.append({model.graph.input_name: rows})
            calibration.patches += len(batch.patches)
            if sharing is not None:
                calibration.patch.append(sharing.feeds(batch.bands, batch.patches, batch.starts))
        if sharing is not None and len(bands):
            calibration.frames.append({sharing.frames_input: np.ascontiguousarray(bands[None, :1024])})
    return calibration


def _quantize_graph(
    source: Path,
    target: Path,
    feeds: list[dict[str, np.ndarray]],
    op_types: tuple[str, ...],
    exclude: list[str],
) -> None:
    """Static QDQ quantization of one graph with its calibration feeds."""
    if not feeds:
        raise QuantizationError(f"{source}: no calibration patches (all calibration signals too short?)")
    quantize_static(
        str(source),
        str(target),
        _FeedsReader(feeds),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types),
        nodes_to_exclude=exclude,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
        # (No CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it has gathered when
        # that count is reached instead of folding them in; MinMax keeps only per-tensor minima
        # and maxima per batch anyway.)
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        use_external_data_format=False,
    )
    onnx.checker.check_model(str(target))


def compare_with_float(
    source: Path,
    target: Path,
    feeds: list[dict[str, np.ndarray]],
    *,
    batches: int = COMPARED_BATCHES,
    named: Path | None = None,
) -> list[Int8Difference]:
    """Run the float32 `source` and its int8 `target` on `batches` of the feeds, spread over them
    (each signal's batches are consecutive), and measure each output's difference. A NaN or inf
    in an int8 output is a QuantizationError naming the file (`named`: the name the int8 graph
    will have, default `target`)."""
    named = named or target
    import onnxruntime as ort

    picked = [feeds[int(i)] for i in np.unique(np.linspace(0, len(feeds) - 1, min(batches, len(feeds))).round())]
    sessions = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in (source, target)]
    names = [o.name for o in sessions[0].get_outputs()]
    largest = dict.fromkeys(names, 0.0)
    total = dict.fromkeys(names, 0.0)
    count = dict.fromkeys(names, 0)
    for feed in picked:
        expected, got = (session.run(names, feed) for session in sessions)
        for name, a, b in zip(names, expected, got, strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if not np.isfinite(b).all():
                also = "as float32's is" if not np.isfinite(a).all() else "where float32's is finite"
                raise QuantizationError(f"{named}: int8 output {name} is NaN or inf on calibration data, {also}")
            diff = np.abs(a - b)
            largest[name] = max(largest[name], float(diff.max(initial=0.0)))
            total[name] += float(diff.sum())
            count[name] += diff.size
    return [Int8Difference(named.name, n, largest[n], total[n] / max(count[n], 1)) for n in names]


def few_tap_convs(path: Path, min_taps: int = MIN_CONV_TAPS) -> list[str]:
    """Names of the Conv nodes with fewer than `min_taps` taps per output (see the module docstring)."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    shapes = {i.name: numpy_helper.to_array(i).shape for i in graph.initializer}
    names = []
    for node in graph.node:
        weights = shapes.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weights is not None and int(np.prod(weights[1:])) < min_taps:
            names.append(node.name)
    return names


def quantize(
    onnx_path: Path,
    calibration: Path | None = None,
    *,
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES,
    exclude: list[str] | None = None,
    max_patches: int = MAX_CALIBRATION_PATCHES,
    min_conv_taps: int = MIN_CONV_TAPS,
) -> QuantizeReport:
    """Write the int8 copy of a converted audio model (and of its frame-sharing parts).

    calibration: a directory of recordings (added to the synthetic signals). op_types: the ops to
    quantize. exclude: node names to keep in float32 (besides the Convs with fewer than
    `min_conv_taps` taps per output). max_patches: calibration patches in all.
    """
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    model = load_model(onnx_path, options=RunOptions(batch_size=16))
    if not isinstance(model, Model):
        raise QuantizationError(
            f"{onnx_path}: a {model.family.algorithm} head reads embeddings; heads run in float32 "
            "(quantize its embedding model instead)"
        )
    signals = calibration_signals(model.sample_rate, calibration)
    feeds = _calibration_feeds(model, signals, max_patches)
    report = QuantizeReport(patches=feeds.patches, signals=list(signals))
    exclude = exclude or []
    jobs = [(onnx_path, feeds.whole)]
    parts = part_files(onnx_path, model.metadata.raw)
    if model.frame_sharing is not None and parts:
        jobs += [(parts[0], feeds.frames), (parts[1], feeds.patch)]
    # Each int8 graph is written under a temporary name and renamed into place once all are
    # written and compared: a failure leaves no broken or partial set, and any earlier one as it was.
    with StagedFiles() as staged:
        for source, source_feeds in jobs:
            target = int8_path(source)
            temporary = staged.add(target)
            log.info("quantizing %s on %d batches -> %s", source, len(source_feeds), target)
            few = few_tap_convs(source, min_conv_taps)
            report.float_convs += len(few)
            _quantize_graph(source, temporary, source_feeds, op_types, exclude + few)
            report.differences += compare_with_float(source, temporary, source_feeds, named=target)
            report.written.append(target)
    report.seconds = time.perf_counter() - start
    return report
