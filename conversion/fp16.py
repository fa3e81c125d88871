"""fp16 variants of converted models, for CUDA: `python -m conversion fp16 MODEL.onnx`.

Writes NAME.fp16.onnx beside NAME.onnx (and the fp16 parts of its frame-sharing split, where the
metadata names one), which `load_model(..., precision="fp16")` runs. Weights and activations are
float16; inputs and outputs stay float32 (keep_io_types), so the frontend and the results are the
same arrays as in fp32. The converter is onnxruntime's own (`onnxruntime.transformers.float16`,
shipped in both onnxruntime and onnxruntime-gpu): it keeps in float32 the ops onnxruntime has no
float16 kernels for, with Casts around them. It needs the onnx package (the convert extra).

Made once, here, not at load time: the runtime does not depend on onnx, and a model's folder (the
installed package, a shared cache) need not be writable when it is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirfeat.framesharing import part_files
from mirfeat.model import precision_variant


def fp16_path(path: Path) -> Path:
    """NAME.onnx -> NAME.fp16.onnx, beside it (`mirfeat.model.precision_variant`'s rule)."""
    return precision_variant(path, "fp16")


def convert_graph(source: Path, target: Path) -> Path:
    """One ONNX graph to float16 weights and activations, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(target))
    return target


@dataclass
class Fp16Report:
    """What `convert` wrote, and the fp16 model's largest absolute difference from fp32 per
    output on a synthetic signal, both run on this machine's CPU (see `check`)."""

    written: list[Path]
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    relative_diff: dict[str, float] = field(default_factory=dict)  # max abs diff / max |fp32 value|


def convert(path: Path, *, check_seconds: float = 10.0) -> Fp16Report:
    """Write the fp16 variant of a converted model (and of its frame-sharing parts); then, unless
    `check_seconds` is 0, compare it with fp32 on that much synthetic audio."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.stem.endswith(".fp16"):
        raise ValueError(f"{path}: already an fp16 variant; convert the fp32 model")
    written = [convert_graph(path, fp16_path(path))]
    metadata_path = path.with_suffix(".json")
    if metadata_path.is_file():
        parts = part_files(path, json.loads(metadata_path.read_text())) or ()
        written += [convert_graph(part, fp16_path(part)) for part in parts if part.is_file()]
    report = Fp16Report(written)
    if check_seconds > 0 and metadata_path.is_file():
        report.max_abs_diff, report.relative_diff = check(path, check_seconds)
    return report


def check(path: Path, seconds: float = 10.0) -> tuple[dict[str, float], dict[str, float]]:
    """Max abs difference per output between the fp32 and fp16 model on `seconds` of a synthetic
    signal (a chirp in noise), both through mirfeat on the CPU provider; and that difference over
    the output's largest absolute fp32 value."""
    from mirfeat.model import Model, load_model

    fp32 = load_model(path)
    fp16 = load_model(path, precision="fp16")
    if not isinstance(fp32, Model) or not isinstance(fp16, Model):
        rng = np.random.default_rng(0)
        width = fp32.graph.input_shape[-1]
        embeddings = rng.standard_normal((16, width)).astype(np.float32)
        a, b = fp32.predict(embeddings), fp16.predict(embeddings)  # type: ignore[union-attr]
    else:
        signal = synthetic_signal(fp32.sample_rate, seconds)
        a, b = fp32(signal).outputs, fp16(signal).outputs
    diffs = {name: float(np.max(np.abs(a[name] - b[name]))) if a[name].size else 0.0 for name in a}
    scale = {name: float(np.max(np.abs(a[name]))) if a[name].size else 0.0 for name in a}
    return diffs, {name: _relative(diffs[name], scale[name]) for name in a}


def _relative(diff: float, scale: float) -> float:
    """diff / scale; for an all-zero fp32 output, 0 when fp16 is zero too, else inf (NaN stays NaN)."""
    if scale:
        return diff / scale  # NaN or inf in either stays NaN or inf
    return 0.0 if diff == 0 else diff * float("inf")


def synthetic_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """A rising chirp over quiet noise, float32 mono: energy in every band the models look at."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + (sample_rate / 4 - 100) * t**2 / (2 * max(seconds, 1e-9))))
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return (chirp + noise).astype(np.float32)
