"""The CUDA path against CPU fp32: outputs within 1e-4, I/O binding, batch_size="auto", fp16.

Runs only where onnxruntime has the CUDA provider (onnxruntime-gpu on a GPU machine; the `cuda`
marker skips it elsewhere): `pytest -m cuda tests/test_gpu.py`. Models: the bundled MusiCNN, plus
every converted model (.onnx with its .json beside it) in $MIRFEAT_GPU_MODELS, e.g. VGGish and
EffNet from `python -m conversion build-test-models --onnx` / `build-replicas --onnx`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mirfeat.model import BUNDLED_DIR, Model, load_model
from mirfeat.runtime import RunOptions

pytestmark = pytest.mark.cuda

CUDA_ATOL = 1e-4  # CUDA fp32 against CPU fp32, on every output
# fp16 on CUDA vs CPU fp32, MusiCNN's real weights: the CPU provider's fp16 run of the same graph
# differs by 1.8e-3 on the activations (tests/test_runtime_gpu_path.py).
FP16_ACTIVATION_ATOL = 5e-3


def gpu_models() -> list[Path]:
    models = [BUNDLED_DIR / "msd-musicnn-1.onnx"]
    extra = os.environ.get("MIRFEAT_GPU_MODELS")
    if extra:
        models += sorted(p for p in Path(extra).glob("*.onnx") if p.with_suffix(".json").is_file())
    return models


def signal(sample_rate: int, seconds: float = 30.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    noise = 0.1 * np.random.default_rng(2).standard_normal(len(t))
    return (0.4 * np.sin(2 * np.pi * 220 * t * (1 + t / seconds)) + noise).astype(np.float32)


@pytest.mark.parametrize("path", gpu_models(), ids=lambda p: p.stem)
@pytest.mark.parametrize("frame_sharing", [True, False])
def test_cuda_equals_cpu_fp32(path, frame_sharing):
    cpu = load_model(path, options=RunOptions(frame_sharing=frame_sharing))
    cuda = load_model(path, options=RunOptions(device="cuda", frame_sharing=frame_sharing))
    assert cuda.graph.session.device == "cuda" and cuda.graph.session.io_binding  # binding on by default
    if not isinstance(cpu, Model):
        embeddings = np.random.default_rng(0).standard_normal((40, cpu.graph.input_shape[-1])).astype(np.float32)
        expected, got = cpu.predict(embeddings), cuda.predict(embeddings)  # type: ignore[union-attr]
    else:
        audio = signal(cpu.sample_rate)
        expected, got = cpu(audio).outputs, cuda(audio).outputs
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=CUDA_ATOL, err_msg=name)


def test_cuda_without_io_binding_equals_with_it():
    audio = signal(16000, 12.0)
    bound = load_model(options=RunOptions(device="cuda"))(audio)
    plain = load_model(options=RunOptions(device="cuda", io_binding=False))(audio)
    for name, value in plain.outputs.items():
        np.testing.assert_allclose(bound.outputs[name], value, rtol=0, atol=CUDA_ATOL, err_msg=name)


def test_cuda_auto_device_and_auto_batch():
    model = load_model(device="auto", batch_size="auto")
    assert isinstance(model, Model) and model.graph.session.device == "cuda"
    assert model.batch_size >= 8
    audio = signal(16000, 60.0)
    expected = load_model()(audio)
    got = model(audio)
    for name, value in expected.outputs.items():
        np.testing.assert_allclose(got.outputs[name], value, rtol=0, atol=CUDA_ATOL, err_msg=name)


def test_cuda_fp16_close_to_cpu_fp32():
    audio = signal(16000)
    expected = load_model()(audio)
    got = load_model(device="cuda", precision="fp16")(audio)
    diff = np.max(np.abs(got.outputs[expected.predictions_name] - expected.outputs[expected.predictions_name]))
    assert diff < FP16_ACTIVATION_ATOL
