"""`load_model` and `Model`: audio in, per-patch activations and embeddings out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirfeat.audio import AudioError, AudioInput, load_audio
from mirfeat.metadata import ModelMetadata
from mirfeat.patches import make_patches, patch_start_times
from mirfeat.runtime import Session
from mirfeat.signatures import Signature, signature_for

BUNDLED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "msd-musicnn-1"


@dataclass
class Result:
    """What one model run gives for one input.

    outputs: every requested graph output, keyed by its schema name, each [patches, dims].
    activations / embeddings: the outputs whose metadata purpose is predictions / embeddings.
    patch_times: start of each patch in seconds.
    """

    outputs: dict[str, np.ndarray]
    labels: list[str]
    patch_times: np.ndarray
    predictions_name: str | None = None
    embeddings_name: str | None = None
    source: str = ""
    duration: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def activations(self) -> np.ndarray | None:
        return self.outputs.get(self.predictions_name) if self.predictions_name else None

    @property
    def embeddings(self) -> np.ndarray | None:
        return self.outputs.get(self.embeddings_name) if self.embeddings_name else None

    def mean(self) -> np.ndarray:
        """Clip-level activations: the mean over patches, [classes] (NaN when there are no patches)."""
        activations = self._require_activations()
        if len(activations) == 0:
            return np.full(activations.shape[1:], np.nan, dtype=np.float32)
        return activations.mean(axis=0)

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The k labels with the highest clip-level activation, best first."""
        clip = self.mean()
        if np.isnan(clip).all():
            return []
        order = np.argsort(-clip, kind="stable")[:k]
        return [(self.labels[i] if i < len(self.labels) else str(i), float(clip[i])) for i in order]

    def _require_activations(self) -> np.ndarray:
        if self.activations is None:
            raise ValueError("this model run has no predictions output")
        return self.activations


class Model:
    """An Essentia model converted to ONNX, with the input signature its metadata names.

    Calling it on a file path or an array runs decode -> signature -> patches -> onnxruntime and
    returns a `Result` with every schema output from one pass.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        metadata: ModelMetadata | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such model file")
        if self.path.suffix == ".pb":
            raise ValueError(
                f"{self.path}: a TensorFlow graph; convert it once with `mirfeat convert {self.path}` "
                "(needs the convert extra) and load the .onnx"
            )
        self.metadata = metadata or _read_metadata_beside(self.path)
        self.signature: Signature = signature_for(self.metadata.algorithm)
        self.session = Session(self.path, device=device, threads=threads)
        self.batch_size = batch_size
        self.input_name = self.session.resolve_input(
            self.metadata.inputs[0] if self.metadata.inputs else self.session.input_names[0]
        )
        self.output_names = [o.name for o in self.metadata.outputs] or list(self.session.output_names)
        self._graph_names = {name: self.session.resolve_output(name) for name in self.output_names}

    @property
    def labels(self) -> list[str]:
        return self.metadata.classes

    @property
    def sample_rate(self) -> int:
        return self.signature.sample_rate

    def bands(self, audio: AudioInput, *, sample_rate: int | None = None) -> np.ndarray:
        """The signature's bands for every frame: [n_frames, n_bands]."""
        return self.signature.compute(load_audio(audio, self.sample_rate, input_rate=sample_rate))

    def patches(self, samples: np.ndarray, last_patch_mode: str = "discard") -> np.ndarray:
        """Mono samples at the model's rate -> model-ready patches [n_patches, T, bands]."""
        sig = self.signature
        return make_patches(sig.compute(samples), sig.patch_size, sig.patch_hop_size, last_patch_mode)

    def predict_patches(self, patches: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run patches [n, T, bands] through the graph: {schema output name: [n, dims]}."""
        names = outputs or self.output_names
        graph_names = [self._graph_names.get(n) or self.session.resolve_output(n) for n in names]
        feed = self._fit_to_input(patches)
        raw = self.session.run(feed, graph_names, self.input_name, self.batch_size)
        return {name: _rows(raw[graph]) for name, graph in zip(names, graph_names, strict=True)}

    def __call__(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        last_patch_mode: str = "discard",
        outputs: list[str] | None = None,
    ) -> Result:
        """Tag / embed a file path or an array ([samples] or [samples, channels] at `sample_rate`)."""
        samples = load_audio(audio, self.sample_rate, input_rate=sample_rate)
        if len(samples) == 0:
            name = "array" if isinstance(audio, np.ndarray) else str(audio)
            raise AudioError(f"{name}: no audio samples (empty input)")
        patches = self.patches(samples, last_patch_mode)
        values = self.predict_patches(patches, outputs)
        sig = self.signature
        return Result(
            outputs=values,
            labels=self.labels,
            patch_times=patch_start_times(len(patches), sig.patch_hop_size, sig.hop_size, sig.sample_rate),
            predictions_name=self.metadata.output_for("predictions"),
            embeddings_name=self.metadata.output_for("embeddings"),
            source=str(audio) if not isinstance(audio, np.ndarray) else "array",
            duration=len(samples) / self.sample_rate,
        )

    def _fit_to_input(self, patches: np.ndarray) -> np.ndarray:
        """Add the singleton axis a 4-D graph input expects ([B,1,T,F] or [B,T,F,1])."""
        shape = self.session.input_shapes[self.input_name]
        if len(shape) == 4:
            return patches[:, None] if shape[1] == 1 else patches[..., None]
        return patches

    def __repr__(self) -> str:
        return f"Model({self.metadata.name!r}, {self.metadata.algorithm}, {self.path})"


def _rows(output: np.ndarray) -> np.ndarray:
    """One row per (patch, channel, time) of the last axis, as Essentia's TensorToVectorReal emits."""
    if output.ndim == 1:
        return output[:, None]
    width = output.shape[-1]
    return output.reshape(-1, width) if output.size else np.zeros((0, width), output.dtype)


def _read_metadata_beside(path: Path) -> ModelMetadata:
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        raise FileNotFoundError(f"{path}: no metadata JSON beside it ({json_path.name})")
    return ModelMetadata.read(json_path)


def bundled_models() -> list[str]:
    """Names of the models that ship with mirfeat."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.onnx"))


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled model's name, an .onnx path, or a .json path with the .onnx beside it."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        path = path.with_suffix(".onnx")
    if path.exists():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.onnx"
    if bundled.is_file():
        return bundled
    known = ", ".join(bundled_models()) or "none"
    raise FileNotFoundError(f"{name_or_path}: no such model file, and not a bundled model ({known})")


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    threads: int | None = None,
) -> Model:
    """Load a bundled model by name (default msd-musicnn-1) or an .onnx file with its JSON beside it."""
    return Model(resolve_model_path(name_or_path), device=device, batch_size=batch_size, threads=threads)
