"""`load_model`, `Model` (audio in) and `Head` (embeddings in): per-patch outputs with labels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from mirfeat.audio import AudioError, AudioInput, load_audio
from mirfeat.framesharing import FrameSharing
from mirfeat.metadata import ModelMetadata, OutputSpec
from mirfeat.patches import make_patches, patch_starts
from mirfeat.runtime import Session, resolve_name
from mirfeat.signatures import Signature, signature_for

BUNDLED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "msd-musicnn-1"
# Essentia algorithms whose models read embeddings rather than audio.
HEAD_ALGORITHMS = ("TensorflowPredict2D", "TensorflowPredict")


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


class _Graph:
    """An ONNX graph with its metadata: tensor names resolved once, rows in, rows out."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        metadata: ModelMetadata | None = None,
    ):
        self.path = _check_model_file(Path(path))
        self.metadata = metadata or _read_metadata_beside(self.path)
        self.device, self.threads = device, threads
        self.session = Session(self.path, device=device, threads=threads)
        self.batch_size = batch_size
        self.input_name = self.resolve_input(self.metadata.inputs[0] if self.metadata.inputs else None)
        specs = self.metadata.outputs or [OutputSpec(name, "") for name in self.session.output_names]
        self.output_names = [spec.name for spec in specs]
        self._graph_names = {spec.name: self._resolve_output(spec) for spec in specs}

    @property
    def labels(self) -> list[str]:
        return self.metadata.classes

    @property
    def name(self) -> str:
        return self.path.stem

    def resolve_input(self, name: str | None) -> str:
        """The graph's input for a schema name; a single-input graph takes any name."""
        if name is not None:
            try:
                return self.session.resolve_input(name)
            except KeyError:
                if len(self.session.input_names) != 1:
                    raise
        return self.session.input_names[0]

    def _resolve_output(self, spec: OutputSpec) -> str:
        """Schema output -> graph output: by name, else (Essentia's own ONNX files rename tensors,
        e.g. `PartitionedCall:1` -> `embeddings`) the only output of the schema's width, else the
        output named after the schema purpose."""
        try:
            return self.session.resolve_output(spec.name)
        except KeyError:
            pass
        width = spec.shape[-1] if spec.shape and isinstance(spec.shape[-1], int) else None
        same_width = [name for name, shape in self.session.output_shapes.items() if width and shape[-1] == width]
        if len(same_width) == 1:
            return same_width[0]
        aliases = {"predictions": ("activations", "predictions"), "embeddings": ("embeddings",)}
        for alias in aliases.get(spec.purpose, ()):
            if alias in self.session.output_names:
                return alias
        return self.session.resolve_output(spec.name)  # raises with the graph's names

    def run_rows(self, rows: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run [n, ...] model inputs through the graph: {schema output name: [rows, dims]}."""
        names = outputs or self.output_names
        graph_names = self._graph_output_names(names)
        raw = self.session.run(self._fit_to_input(rows), graph_names, self.input_name, self.batch_size)
        return {name: _rows(raw[graph]) for name, graph in zip(names, graph_names, strict=True)}

    def _graph_output_names(self, names: list[str]) -> list[str]:
        """Schema (or graph) output names -> the graph's names."""
        return [self._graph_names.get(n) or resolve_name(n, self.session.output_names) for n in names]

    def _fit_to_input(self, rows: np.ndarray) -> np.ndarray:
        """Add the singleton axis the graph's input has and ours lacks ([B,1,T,F], [B,T,F,1], [B,1,D])."""
        shape = self.session.input_shapes[self.input_name]
        if len(shape) == rows.ndim + 1:
            return rows[:, None] if shape[1] == 1 else rows[..., None]
        return rows

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metadata.name!r}, {self.metadata.algorithm}, {self.path})"


class Model(_Graph):
    """An Essentia audio model converted to ONNX, with the input signature its metadata names.

    Calling it on a file path or an array runs decode -> signature -> patches -> onnxruntime and
    returns a `Result` with every schema output from one pass.
    """

    def __init__(self, path: str | os.PathLike, **kwargs):
        super().__init__(path, **kwargs)
        self.signature: Signature = signature_for(self.metadata.algorithm)
        self.frame_sharing = self._load_frame_sharing()

    def _load_frame_sharing(self) -> FrameSharing | None:
        """The split graph written by the conversion step (see `mirfeat.framesharing`), if any."""
        spec = (self.metadata.raw.get("mirfeat") or {}).get("frame_sharing")
        if not spec:
            return None
        frames, rest = (self.path.parent / spec[key] for key in ("frames_model", "patch_model"))
        if not (frames.is_file() and rest.is_file()):
            return None
        sessions = [Session(p, device=self.device, threads=self.threads) for p in (frames, rest)]
        self._sharing_patch_size = sessions[1].input_shapes[self.input_name][1]
        return FrameSharing(*sessions, spec["blocks"], int(spec["context"]), self.input_name)

    @property
    def sample_rate(self) -> int:
        return self.signature.sample_rate

    def load(self, audio: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 samples at the model's rate; an error naming the input when there are none."""
        samples = load_audio(audio, self.sample_rate, input_rate=sample_rate)
        if len(samples) == 0:
            raise AudioError(f"{_source_name(audio)}: no audio samples (empty input)")
        return samples

    def bands(self, audio: AudioInput, *, sample_rate: int | None = None) -> np.ndarray:
        """The signature's bands for every frame: [n_frames, n_bands]."""
        return self.signature.compute(self.load(audio, sample_rate))

    def predict_bands(
        self,
        bands: np.ndarray,
        last_patch_mode: str = "discard",
        outputs: list[str] | None = None,
        patch_size: int | None = None,
        hop_size: int | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """Cut bands [n_frames, n_bands] into patches and run them: ({output: [rows, dims]}, n_patches).

        Patch size and hop default to the signature's. Uses frame sharing when the model has it.
        """
        size = patch_size or self.signature.patch_size
        hop = (self.signature.patch_hop_size if hop_size is None else hop_size) or size
        patches = make_patches(bands, size, hop, last_patch_mode)
        if self.frame_sharing is None or size != self._sharing_patch_size:
            return self.run_rows(patches, outputs), len(patches)
        starts = patch_starts(len(bands), size, hop, last_patch_mode)
        names = outputs or self.output_names
        graph_names = self._graph_output_names(names)
        raw = self.frame_sharing.run(bands, patches, starts, graph_names, self.batch_size)
        return {name: _rows(raw[g]) for name, g in zip(names, graph_names, strict=True)}, len(patches)

    def patch_times(self, n_patches: int) -> np.ndarray:
        return self.signature.patch_times(n_patches)

    def __call__(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        last_patch_mode: str = "discard",
        outputs: list[str] | None = None,
    ) -> Result:
        """Tag / embed a file path or an array ([samples] or [samples, channels] at `sample_rate`)."""
        samples = self.load(audio, sample_rate)
        values, n_patches = self.predict_bands(self.signature.compute(samples), last_patch_mode, outputs)
        return Result(
            outputs=values,
            labels=self.labels,
            patch_times=self.patch_times(n_patches),
            predictions_name=self.metadata.output_for("predictions"),
            embeddings_name=self.metadata.output_for("embeddings"),
            source=_source_name(audio),
            duration=len(samples) / self.sample_rate,
        )


class Head(_Graph):
    """A classifier head on another model's embeddings (Essentia's TensorflowPredict2D models).

    `head.predict(embeddings)` maps [patches, D] to {output: [patches, classes]}; calling the head
    on audio runs its embedding model first (found beside the head, bundled, or given).
    """

    def __init__(self, path: str | os.PathLike, *, embedding_model: Model | None = None, **kwargs):
        super().__init__(path, **kwargs)
        self._embedding_model = embedding_model

    @property
    def embedding_model_name(self) -> str | None:
        embedding = (self.metadata.raw.get("inference") or {}).get("embedding_model") or {}
        return embedding.get("model_name")

    @property
    def embedding_model(self) -> Model:
        """The model whose embeddings this head reads; loaded on first use and shared."""
        if self._embedding_model is None:
            name = self.embedding_model_name
            if not name:
                raise ValueError(f"{self.path}: its metadata names no inference.embedding_model")
            beside = self.path.parent / f"{name}.onnx"
            self._embedding_model = _cached_model(str(beside if beside.is_file() else name), self.device)
        return self._embedding_model

    def predict(self, embeddings: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """[patches, D] embeddings -> {schema output name: [patches, dims]}."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"{self.name}: embeddings must be [patches, dims], got shape {embeddings.shape}")
        return self.run_rows(embeddings, outputs)

    def result(self, embeddings: np.ndarray, patch_times: np.ndarray, **info) -> Result:
        return Result(
            outputs=self.predict(embeddings),
            labels=self.labels,
            patch_times=patch_times,
            predictions_name=self.metadata.output_for("predictions") or self.output_names[0],
            **info,
        )

    def __call__(self, audio: AudioInput, *, sample_rate: int | None = None, last_patch_mode: str = "discard"):
        embedder = self.embedding_model
        run = embedder(audio, sample_rate=sample_rate, last_patch_mode=last_patch_mode)
        result = self.result(run.embeddings, run.patch_times, source=run.source, duration=run.duration)
        result.outputs[embedder.metadata.output_for("embeddings")] = run.embeddings
        result.embeddings_name = embedder.metadata.output_for("embeddings")
        return result


def _rows(output: np.ndarray) -> np.ndarray:
    """One row per (patch, channel, time) of the last axis, as Essentia's TensorToVectorReal emits."""
    if output.ndim == 1:
        return output[:, None]
    width = output.shape[-1]
    return output.reshape(-1, width) if output.size else np.zeros((0, width), output.dtype)


def _source_name(audio: AudioInput) -> str:
    return "array" if isinstance(audio, np.ndarray) else str(audio)


def _check_model_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix == ".pb":
        raise ValueError(
            f"{path}: a TensorFlow graph; convert it once with `mirfeat convert {path}` "
            "(needs the convert extra) and load the .onnx"
        )
    return path


def _read_metadata_beside(path: Path) -> ModelMetadata:
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        raise FileNotFoundError(f"{path}: no metadata JSON beside it ({json_path.name})")
    return ModelMetadata.read(json_path)


def bundled_models() -> list[str]:
    """Names of the models that ship with mirfeat."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.json") if p.with_suffix(".onnx").is_file())


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
    embedding_model: Model | None = None,
) -> Model | Head:
    """Load a bundled model by name (default msd-musicnn-1) or an .onnx file with its JSON beside it.

    A classifier head (metadata algorithm TensorflowPredict2D) loads as a `Head`; its embedding
    model is `embedding_model` or is found by name beside it or among the bundled models.
    """
    path = _check_model_file(resolve_model_path(name_or_path))
    metadata = _read_metadata_beside(path)
    options = {"device": device, "batch_size": batch_size, "threads": threads, "metadata": metadata}
    if metadata.algorithm in HEAD_ALGORITHMS:
        return Head(path, embedding_model=embedding_model, **options)
    return Model(path, **options)


@lru_cache(maxsize=8)
def _cached_model(name_or_path: str, device: str) -> Model:
    """Embedding models shared by the heads that read them."""
    model = load_model(name_or_path, device=device)
    if not isinstance(model, Model):
        raise ValueError(f"{name_or_path}: an embedding model must take audio, not embeddings")
    return model
