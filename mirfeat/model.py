"""`load_model`, `Model` (audio in) and `Head` (embeddings in): per-patch outputs with labels.

What a model does around its graph comes from its family (`mirfeat.families`), chosen by the
`inference.algorithm` of the metadata JSON beside the .onnx.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mirfeat.audio import AudioError, AudioInput, load_audio, stream_audio
from mirfeat.errors import ModelError
from mirfeat.families import Family, family_for
from mirfeat.framesharing import FrameSharing, part_files
from mirfeat.metadata import ModelMetadata
from mirfeat.patches import PatchBatch, patch_batches
from mirfeat.results import Result
from mirfeat.runtime import DEFAULT_BATCH, ModelGraph, RunOptions, Session

log = logging.getLogger(__name__)

# batch_size="auto" starts here: below it the time per batch outside the graph (cutting patches,
# feeds, joining outputs), which the search does not see, outweighs what a smaller batch saves.
AUTO_BATCH_START = 8

BUNDLED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "msd-musicnn-1"


class _LoadedGraph:
    """What models and heads share: an .onnx file, its metadata, its family and its session.

    metadata: default, the JSON beside the file. family: default, the one the metadata's
    algorithm names. input_name: the graph input to feed (default: the metadata's first input).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        metadata: ModelMetadata | None = None,
        family: Family | None = None,
        options: RunOptions | None = None,
        input_name: str | None = None,
    ):
        self.path = _check_model_file(Path(path))
        self.metadata = metadata or read_metadata_beside(self.path)
        self.family = family or family_for(self.metadata.algorithm, self.metadata.source or str(self.path))
        self.options = options or RunOptions()
        graph_file = precision_file(self.path, self.options.precision, required=self.family.takes_audio)
        self.graph = ModelGraph(Session(graph_file, self.options), self.metadata, input_name)
        if self.options.precision == "fp16" and self.graph.session.device == "cpu":
            log.warning(
                "%s: fp16 on the CPU runs, for checking, but slower than fp32 (onnxruntime's CPU provider "
                "has few fp16 kernels); fp16 is meant for device='cuda'",
                self.path.name,
            )
        self.predictions_name, self.embeddings_name = self._purpose_names()

    def _purpose_names(self) -> tuple[str | None, str | None]:
        """The outputs of purpose predictions and embeddings. Without a schema that says, the
        predictions are the one output as wide as the labels, else the family's default output;
        a predictions output whose width contradicts the labels is a ModelError."""
        where = self.metadata.source or str(self.path)
        predictions = self.metadata.output_for("predictions")
        widths = {name: self.graph.output_width(name) for name in self.output_names}
        n_labels = len(self.labels)
        if predictions is None:
            fitting = [name for name, width in widths.items() if n_labels and width == n_labels]
            default = [n for n in self.output_names if n.split(":")[0] == self.family.output_name.split(":")[0]]
            candidates = fitting if len(fitting) == 1 else default
            predictions = candidates[0] if candidates else None
        if predictions and n_labels and widths.get(predictions) not in (None, n_labels):
            raise ModelError(
                f"{where}: classes lists {n_labels} labels, but the predictions output {predictions} "
                f"has {widths[predictions]}"
            )
        return predictions, self.metadata.output_for("embeddings")

    @property
    def labels(self) -> list[str]:
        return self.metadata.classes

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def output_names(self) -> list[str]:
        """Every output the metadata lists (or the graph has), as the metadata names them."""
        return self.graph.output_names

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metadata.name!r}, {self.family.algorithm}, {self.path})"


class Model(_LoadedGraph):
    """An Essentia audio model converted to ONNX, run with its family's input signature.

    Calling it on a file path or an array runs decode -> bands -> patches -> onnxruntime and
    returns a `Result` with every schema output from one pass. patch_size / patch_hop_size
    override the family's (MAEST's follow its file name or its graph's input, as in Essentia).
    hop_ms: CREPE's frame hop in milliseconds (Essentia's `hopSize`, default 10).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        patch_size: int | None = None,
        patch_hop_size: int | None = None,
        hop_ms: float | None = None,
        **kwargs,
    ):
        super().__init__(path, **kwargs)
        try:
            self.family = self.family.with_hop_ms(hop_ms)
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        if self.family.signature is None:
            raise ValueError(
                f"{self.path}: a {self.family.algorithm} model reads embeddings, not audio; load it with load_model()"
            )
        self.signature = self.family.signature
        self.patch_size, self.patch_hop_size = self._patching(patch_size, patch_hop_size)
        self._check_input_shape()
        self.frame_sharing = self._load_frame_sharing() if self.options.frame_sharing else None
        self._batch_size = self.graph.session.fixed_batch or self.options.batch_size_or(
            0, default_batch_size(self.family)
        )
        if not self.graph.session.fixed_batch and self.options.auto_batch:
            self._batch_size = self._tune_batch()

    def _check_input_shape(self) -> None:
        """The graph's input must take the patches this family feeds (a ModelError at load, not a
        shape error from onnxruntime on the first file)."""
        fed = self.family.input_shape(self.patch_size)
        graph = list(self.graph.input_shape[1:])
        if len(graph) == len(fed) + 1 and 1 in graph:  # a channel axis the runtime adds
            graph.remove(1)
        if len(graph) != len(fed) or any(
            isinstance(g, int) and g > 0 and g != f for g, f in zip(graph, fed, strict=True)
        ):
            raise ModelError(
                f"{self.path}: the graph's input {self.graph.input_name} is {self.graph.input_shape}, but "
                f"{self.family.algorithm} (inference.algorithm in {self.metadata.source or 'its metadata'}) "
                f"feeds patches of {list(fed)}"
            )

    def _patching(self, patch_size: int | None, patch_hop_size: int | None) -> tuple[int, int]:
        """The family's rule on the file name; else, where the family has several patch sizes, the
        one the graph's input is built for; else the caller's values or the defaults."""
        size, hop = self.family.patching(self.path.name, patch_size, patch_hop_size)
        if patch_size is None and (size, hop) == (self.family.patch_size, self.family.patch_hop_size):
            graph_shape = tuple(self.graph.input_shape[1:])
            for _, other, other_hop in self.family.patch_overrides:
                if self.family.input_shape(other) == graph_shape:
                    return other, other_hop
        return size, hop

    def _load_frame_sharing(self) -> FrameSharing | None:
        """The split graph written by the conversion step (see `mirfeat.framesharing`), if any."""
        spec = (self.metadata.raw.get("mirfeat") or {}).get("frame_sharing")
        parts = part_files(self.path, self.metadata.raw)
        if not spec or not parts or self.family.band_transform or self.family.patch_transform:
            return None
        frames, rest = (precision_variant(part, self.options.precision) for part in parts)
        if not (frames.is_file() and rest.is_file()):
            return None  # no split (or a variant written without its parts): the whole graph runs per patch
        frames_session, rest_session = Session(frames, self.options), Session(rest, self.options)
        try:
            sharing = FrameSharing(
                frames_session, rest_session, spec["blocks"], int(spec["context"]), self.graph.input_name
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{self.metadata.source}: mirfeat.frame_sharing: {frames.name} and {rest.name} do not fit "
                f"the model (swapped, or from another model?): {exc}"
            ) from None
        return sharing if rest_session.input_shapes[sharing.rest_input][1] == self.patch_size else None

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
        """The bands patches are cut from (after the family's band transform): [n_frames, n_bands]."""
        return self.family.bands(self.load(audio, sample_rate))

    def run_patches(
        self,
        bands: np.ndarray,
        outputs: list[str] | None = None,
        *,
        last_patch_mode: str = "discard",
        patch_size: int | None = None,
        patch_hop_size: int | None = None,
        max_patches: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Cut bands [n_frames, n_bands] into patches and run them: {output: [n_patches, ...]} as the
        graph gives them (batch axis first). Uses frame sharing when the model has it.

        max_patches: run only the first patches (Essentia's EffNet drops incomplete batches).
        """
        size = patch_size or self.patch_size
        hop = (self.patch_hop_size if patch_hop_size is None else patch_hop_size) or size
        return self._run_stream([bands], outputs, last_patch_mode, size, hop, max_patches)

    def _run_stream(
        self,
        band_chunks: Iterable[np.ndarray],
        outputs: list[str] | None,
        last_patch_mode: str,
        size: int,
        hop: int,
        max_patches: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Patches cut from bands arriving in chunks, run batch by batch: {output: [n_patches, ...]}.
        Only the frames of the batch in hand are kept, whatever the signal's length."""
        names = outputs or self.output_names
        graph_names = [self.graph.graph_name(n) for n in names]
        parts: dict[str, list[np.ndarray]] = {g: [] for g in graph_names}
        for batch in patch_batches(band_chunks, size, hop, last_patch_mode, self.batch_size, max_patches):
            raw = self.run_feeds(self.patch_feeds(batch), graph_names)
            for g in graph_names:
                parts[g].append(raw[g])
        return {name: self.graph.session.concat(parts[g], g) for name, g in zip(names, graph_names, strict=True)}

    @property
    def batch_size(self) -> int:
        """Patches per graph run: the graph's fixed batch, else the options' (measured at load for
        batch_size="auto")."""
        return self._batch_size

    def _tune_batch(self) -> int:
        """batch_size="auto": the patch graph timed on synthetic patches of this model's shape (the
        values do not change the time), doubling the batch while throughput rises (`Session.tune_batch`)."""
        hop = self.patch_hop_size or self.patch_size
        n = 4  # distinct patches, repeated to fill each batch tried
        bands = np.random.default_rng(0).standard_normal(((n - 1) * hop + self.patch_size, self.signature.n_bands))
        sample = next(patch_batches([bands.astype(np.float32)], self.patch_size, hop, "discard", n))
        feeds = self.patch_feeds(sample)
        session = self._session_for(feeds)
        outputs = [session.resolve_output(self.graph.graph_name(name)) for name in self.output_names]
        # On the CPU throughput stops rising long before 256 patches; past it, memory only grows.
        limit = 1024 if session.device == "cuda" else 256
        search = session.tune_batch(
            lambda a, b: {k: np.take(v, np.arange(a, b) % n, axis=0) for k, v in feeds.items()},
            outputs,
            start=AUTO_BATCH_START,
            limit=limit,
        )
        hop_seconds = float(self.patch_times(2)[1])
        log.info(
            "%s on %s: batch_size %d, %.0f audio-s/s in the graph alone",
            self.name,
            session.device,
            search.batch,
            search.rates[search.batch] * hop_seconds,
        )
        return search.batch

    def patch_feeds(self, batch: PatchBatch) -> dict[str, np.ndarray]:
        """The inputs of the graph that runs per patch, one row per patch of `batch`: the patches in
        the graph's layout, plus the per-frame features when the model shares frames. Rows from
        several batches (of several files) can be joined and run together by `run_feeds`."""
        if self._shares_frames(batch.patches.shape[1]):
            assert self.frame_sharing is not None
            return self.frame_sharing.feeds(batch.bands, batch.patches, batch.starts)
        return {self.graph.input_name: self.graph.fit_to_input(self.family.model_input(batch.patches))}

    def run_feeds(self, feeds: dict[str, np.ndarray], graph_names: list[str]) -> dict[str, np.ndarray]:
        """Run rows of `patch_feeds` (in batches of `batch_size`): {graph output name: [rows, ...]}."""
        session = self._session_for(feeds)
        rows = len(next(iter(feeds.values())))
        names = [session.resolve_output(g) for g in graph_names]
        raw = session.run_batches(rows, lambda a, b: {k: v[a:b] for k, v in feeds.items()}, names, self.batch_size)
        return {g: raw[n] for g, n in zip(graph_names, names, strict=True)}

    def _session_for(self, feeds: dict[str, np.ndarray]) -> Session:
        """Feeds with per-frame block features are the split graph's patch part's; others the whole graph's."""
        sharing = self.frame_sharing
        return sharing.rest if sharing and all(b in feeds for b in sharing.rest_blocks) else self.graph.session

    def _shares_frames(self, patch_size: int) -> bool:
        return self.frame_sharing is not None and patch_size == self.patch_size

    def patch_times(self, n_patches: int) -> np.ndarray:
        return self.family.patch_times(n_patches, self.patch_hop_size)

    def __call__(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        last_patch_mode: str = "discard",
        outputs: list[str] | None = None,
    ) -> Result:
        """Tag / embed a file path or an array ([samples] or [samples, channels] at `sample_rate`).

        Decoding, bands, patches and graph runs go block by block, so memory does not grow with the
        length of the input; except for a family with a whole-signal transform (FSD-SINet normalises
        the whole clip first, as Essentia does), which holds the samples (4 bytes each)."""
        samples = _SampleCount(self.audio_blocks(audio, sample_rate))
        raw = self._run_stream(
            self.family.stream_bands(samples), outputs, last_patch_mode, self.patch_size, self.patch_hop_size
        )
        if samples.count == 0:
            raise AudioError(f"{_source_name(audio)}: no audio samples (empty input)")
        values = raw if self.family.tensor_output else {name: essentia_rows(v) for name, v in raw.items()}
        n_patches = len(next(iter(raw.values()))) if raw else 0
        return Result(
            outputs=values,
            labels=self.labels,
            patch_times=self.patch_times(n_patches),
            predictions_name=self.predictions_name,
            embeddings_name=self.embeddings_name,
            source=_source_name(audio),
            duration=samples.count / self.sample_rate,
            algorithm=self.family.algorithm,
        )

    def audio_blocks(self, audio: AudioInput, sample_rate: int | None = None) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the model's rate, decoded and resampled as they are needed."""
        return stream_audio(audio, self.sample_rate, input_rate=sample_rate)


class _SampleCount:
    """Passes blocks of samples through, counting them."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self.blocks, self.count = blocks, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.count += len(block)
            yield block


class Head(_LoadedGraph):
    """A classifier head on another model's embeddings (Essentia's TensorflowPredict2D models).

    `head.predict(embeddings)` maps [patches, D] to {output: [patches, classes]}; calling the head
    on audio runs its embedding model first: `embedding_model`, or the one its metadata names,
    found beside the head or among the bundled models and loaded with the head's options. Pass
    one model as `embedding_model` to several heads to share it (or use `Pipeline`).
    """

    def __init__(self, path: str | os.PathLike, *, embedding_model: Model | None = None, **kwargs):
        super().__init__(path, **kwargs)
        if self.family.signature is not None:
            raise ValueError(f"{self.path}: a {self.family.algorithm} model takes audio; load it with load_model()")
        self._embedding_model = embedding_model

    @property
    def embedding_model_name(self) -> str | None:
        embedding = (self.metadata.raw.get("inference") or {}).get("embedding_model") or {}
        return embedding.get("model_name")

    @property
    def embedding_model(self) -> Model:
        """The model whose embeddings this head reads; loaded on first use."""
        if self._embedding_model is None:
            name = self.embedding_model_name
            if not name:
                raise ValueError(
                    f"{self.path}: a {self.family.algorithm} head reads embeddings [patches, dims], not audio, "
                    "and its metadata names no inference.embedding_model to compute them; call "
                    "head.predict(embeddings) or pass embedding_model="
                )
            beside = [self.path.parent / f"{n}.onnx" for n in batch_variants(name)]
            found = next((path for path in beside if path.is_file()), None)
            model = load_model(found or name, options=self.options)
            if not isinstance(model, Model):
                raise ValueError(f"{self.path}: its embedding model {name} reads embeddings, not audio")
            self._embedding_model = model
        return self._embedding_model

    def predict(self, embeddings: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """[patches, D] embeddings -> {schema output name: [patches, dims]}."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"{self.name}: embeddings must be [patches, dims], got shape {embeddings.shape}")
        # batch_size "auto": all rows in one run; a head is a layer or two, its input the embeddings.
        batch = self.options.batch_size_or(0, default_batch_size(self.family))
        raw = self.graph.run(embeddings, outputs or self.output_names, batch)
        return {name: essentia_rows(value) for name, value in raw.items()}

    def result(
        self,
        embeddings: np.ndarray,
        patch_times: np.ndarray,
        source: str = "",
        duration: float = 0.0,
        *,
        embeddings_output: str | None = None,
    ) -> Result:
        """A `Result` of this head on [patches, D] embeddings, with their patch times [patches].
        embeddings_output: also keep the embeddings among the outputs, under this name (the
        embedding model's output), as the result's embeddings."""
        outputs = self.predict(embeddings)
        if embeddings_output is not None:
            outputs[embeddings_output] = embeddings
        return Result(
            outputs=outputs,
            labels=self.labels,
            patch_times=patch_times,
            predictions_name=self.predictions_name or self.output_names[0],
            embeddings_name=embeddings_output or self.embeddings_name,
            source=source,
            duration=duration,
        )

    def __call__(self, audio: AudioInput, *, sample_rate: int | None = None, last_patch_mode: str = "discard"):
        embedder = self.embedding_model
        embeddings_name = embedder.metadata.output_for("embeddings") or embedder.output_names[0]
        run = embedder(audio, sample_rate=sample_rate, last_patch_mode=last_patch_mode, outputs=[embeddings_name])
        embeddings = run.outputs[embeddings_name]
        return self.result(
            embeddings, run.patch_times, source=run.source, duration=run.duration, embeddings_output=embeddings_name
        )


# Essentia publishes one model in several batch variants (discogs-effnet-bs64-1 as a TF graph,
# discogs-effnet-bsdynamic-1 as ONNX): same weights, and heads name one of them.
_BATCH_VARIANT = re.compile(r"-bs(?:\d+|dynamic)-")


def batch_variants(name: str) -> list[str]:
    """`name` first, then the same model's other batch variants (bs64, bs1, bsdynamic)."""
    if not _BATCH_VARIANT.search(name):
        return [name]
    others = [_BATCH_VARIANT.sub(f"-{b}-", name) for b in ("bs64", "bsdynamic", "bs1")]
    return [name] + [other for other in others if other != name]


def same_model(a: str, b: str) -> bool:
    """Whether two model names are one model, batch variants aside."""
    return _BATCH_VARIANT.sub("-bs-", a) == _BATCH_VARIANT.sub("-bs-", b)


def essentia_rows(output: np.ndarray) -> np.ndarray:
    """One row per (patch, channel, time) of the last axis, as Essentia's TensorToVectorReal emits."""
    if output.ndim == 1:
        return output[:, None]
    width = output.shape[-1]
    return output.reshape(-1, width) if output.size else np.zeros((0, width), output.dtype)


def _source_name(audio: AudioInput) -> str:
    return "array" if isinstance(audio, np.ndarray) else str(audio)


# The conversion command that writes each precision's variant beside a model.
VARIANT_COMMANDS = {"int8": "quantize", "fp16": "fp16"}


def precision_variant(path: Path, precision: str) -> Path:
    """Where the `precision` variant of the graph `path` lives: `path` itself for fp32, else beside
    it, NAME.int8.onnx / NAME.fp16.onnx for NAME.onnx (NAME.frames.int8.onnx for a frame-sharing
    part), as `python -m conversion quantize` / `fp16` write them."""
    return path if precision == "fp32" else path.with_name(f"{path.stem}.{precision}{path.suffix}")


def int8_path(path: Path) -> Path:
    """`precision_variant(path, "int8")`: the copy `python -m conversion quantize` writes."""
    return precision_variant(path, "int8")


def precision_file(path: Path, precision: str, *, required: bool = True) -> Path:
    """The graph file that runs `path` at `precision` (see `precision_variant`). A missing variant
    is a ModelError naming the command that writes it when `required` (audio models); otherwise
    (heads, which stay fp32) the fp32 file runs."""
    variant = precision_variant(path, precision)
    if variant.is_file():
        return variant
    if required:
        command = VARIANT_COMMANDS.get(precision, precision)
        raise ModelError(
            f"{path}: precision={precision!r} needs its variant {variant.name} beside it; write it once with "
            f"`python -m conversion {command} {path}` (needs the convert extra: pip install 'mirfeat[convert]')"
        )
    log.info("%s: no %s variant (%s); it runs in fp32", path.name, precision, variant.name)
    return path


def _check_model_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix == ".pb":
        raise ValueError(
            f"{path}: a TensorFlow graph; convert it once with `mirfeat convert {path}` "
            "(needs the convert extra) and load the .onnx"
        )
    return path


def read_metadata_beside(path: Path) -> ModelMetadata:
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        raise FileNotFoundError(f"{path}: no metadata JSON beside it ({json_path.name})")
    return ModelMetadata.read(json_path)


def bundled_models() -> list[str]:
    """Names of the models that ship with mirfeat."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.json") if p.with_suffix(".onnx").is_file())


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled model's name, an .onnx path, a .json path with the .onnx beside it, or the name of
    one of Essentia's published models (`mirfeat models list`): fetched into the cache on first use
    (`mirfeat.cache`; a head brings its embedding model)."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        path = path.with_suffix(".onnx")
    if path.exists():
        return path
    name = path.stem if path.suffix == ".onnx" else str(name_or_path)
    bundled = BUNDLED_DIR / f"{name}.onnx"
    if bundled.is_file():
        return bundled
    if path.parent == Path(".") and path.suffix in ("", ".onnx"):
        from mirfeat.cache import resolve  # no network code at `import mirfeat`

        cached = resolve(name)
        if cached is not None:
            return cached
    known = ", ".join(bundled_models()) or "none"
    raise FileNotFoundError(
        f"{name_or_path}: no such model file, and not a bundled model ({known}) nor one of Essentia's "
        "published models (`mirfeat models list`)"
    )


def default_batch_size(family: Family) -> int:
    """Patches per run when the caller names none: `DEFAULT_BATCH`, or the family's own batch where
    that is smaller (MAEST's 1: 12% faster than 16 at 300 s and a third of the memory, since its
    attention already works on 1256-1876 frames a patch)."""
    return min(family.batch_size, DEFAULT_BATCH)


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str = "cpu",
    batch_size: int | str | None = None,
    threads: int | None = None,
    precision: str = "fp32",
    embedding_model: Model | None = None,
    options: RunOptions | None = None,
    hop_ms: float | None = None,
) -> Model | Head:
    """Load a bundled model by name (default msd-musicnn-1) or an .onnx file with its JSON beside it.

    The metadata's algorithm picks the family. A classifier head (TensorflowPredict2D) loads as a
    `Head`; its embedding model is `embedding_model` or is found by name beside it or among the
    bundled models. `options` (or device / batch_size / threads / precision) apply to every session
    opened (see `RunOptions`). batch_size: patches per run, or "auto"; default
    `default_batch_size(family)`. precision: "fp32"; "int8" for the quantized copy `python -m
    conversion quantize MODEL.onnx` writes beside the model (its accuracy against Essentia is in
    benchmarks/README.md); "fp16" for the copy `python -m conversion fp16` writes, for CUDA. A
    missing variant is an error naming the command.
    hop_ms: a CREPE model's frame hop in milliseconds (default 10); an error for other families.
    """
    path = _check_model_file(resolve_model_path(name_or_path))
    metadata = read_metadata_beside(path)
    family = family_for(metadata.algorithm, str(path.with_suffix(".json")))
    options = options or RunOptions(device=device, batch_size=batch_size, threads=threads, precision=precision)
    if family.takes_audio:
        return Model(path, metadata=metadata, family=family, options=options, hop_ms=hop_ms)
    if hop_ms is not None:
        raise ValueError(f"{path}: hop_ms is a CREPE model's frame hop; a {family.algorithm} head has none")
    return Head(path, metadata=metadata, family=family, options=options, embedding_model=embedding_model)
