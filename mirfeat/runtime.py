"""A thin onnxruntime wrapper: providers, threads, batching, tensor-name resolution."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

DEVICES = ("cpu", "cuda")


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for "cpu" or "cuda" (a clear error when CUDA is missing)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "device='cuda' needs onnxruntime-gpu with a working CUDA install "
                "(pip install 'mirfeat[cuda]'); this onnxruntime offers only "
                f"{', '.join(ort.get_available_providers())}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device must be one of {DEVICES}, not {device!r}")


def resolve_name(requested: str, available: list[str]) -> str:
    """Match a TensorFlow-style tensor name against a graph's names.

    Essentia's JSON says "model/Sigmoid"; converted graphs say "model/Sigmoid:0"; Essentia's own
    ONNX files may use plain names. Exact matches win, then ":0" added or removed.
    """
    if requested in available:
        return requested
    for candidate in (f"{requested}:0", requested.removesuffix(":0")):
        if candidate in available:
            return candidate
    raise KeyError(f"no tensor {requested!r} in the model (it has {', '.join(available)})")


class Session:
    """One ONNX graph in onnxruntime, run batch by batch with every requested output at once."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.device = device
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        # Idle worker threads would otherwise spin for a while after each run and take the cores
        # from the numpy frontend that runs between batches (3-6x slower frontend on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers_for(device)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{path}: not a valid ONNX model ({exc})") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_shapes = {i.name: i.shape for i in self._session.get_inputs()}
        self.output_shapes = {o.name: o.shape for o in self._session.get_outputs()}

    def resolve_output(self, name: str) -> str:
        return resolve_name(name, self.output_names)

    def resolve_input(self, name: str) -> str:
        return resolve_name(name, self.input_names)

    def run(
        self, inputs: np.ndarray, outputs: list[str], input_name: str | None = None, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """Run [n, ...] inputs in batches of `batch_size` (<= 0: all at once).

        Returns {output name: [n, ...]} with the names as the graph spells them.
        """
        input_name = input_name or self.input_names[0]
        n = len(inputs)
        step = n if batch_size <= 0 else batch_size
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for start in range(0, n, max(step, 1)):
            batch = np.ascontiguousarray(inputs[start : start + step], dtype=np.float32)
            for name, value in zip(outputs, self._session.run(outputs, {input_name: batch}), strict=True):
                chunks[name].append(value)
        return {name: self.concat_batches(parts, inputs, name) for name, parts in chunks.items()}

    def run_raw(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime's run with graph names as they are: no batching, no name resolution."""
        return self._session.run(outputs, feeds)

    def run_feeds(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One run of a graph with several inputs; names as the schema or the graph spell them."""
        inputs = {self.resolve_input(name): np.asarray(value) for name, value in feeds.items()}
        names = [self.resolve_output(name) for name in outputs] if outputs else self.output_names
        return dict(zip(outputs or names, self._session.run(names, inputs), strict=True))

    def concat_batches(self, parts: list[np.ndarray], inputs: np.ndarray, name: str) -> np.ndarray:
        if parts:
            return np.concatenate(parts, axis=0)
        # No input rows: an empty result with the output's known trailing shape.
        shape = next(o.shape for o in self._session.get_outputs() if o.name == name)
        trailing = [d if isinstance(d, int) and d > 0 else 0 for d in shape[1:]]
        return np.zeros([0, *trailing], dtype=np.float32)
