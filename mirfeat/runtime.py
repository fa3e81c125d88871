"""onnxruntime: sessions, the one batch loop, and a graph's tensor names resolved against its metadata."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirfeat.errors import DeviceError, ModelError
from mirfeat.metadata import ModelMetadata, OutputSpec


def _check_onnxruntime_for_numpy() -> None:
    """onnxruntime before 1.19 is built against numpy 1 and crashes on numpy 2 (pip lets the two
    meet on platforms whose newest onnxruntime is older): say so instead of crashing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ort_version = version("onnxruntime")
    except PackageNotFoundError:
        return  # onnxruntime-gpu, or a build without metadata
    major, minor = (int(part) for part in ort_version.split(".")[:2])
    if (major, minor) < (1, 19) and int(np.__version__.split(".")[0]) >= 2:
        raise ImportError(
            f"onnxruntime {ort_version} needs numpy 1 (numpy {np.__version__} is installed): "
            "pip install 'numpy<2', or a newer onnxruntime where your platform has one"
        )


_check_onnxruntime_for_numpy()

import onnxruntime as ort  # noqa: E402  (after the check: an old build crashes on import)

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "int8", "fp16")
AUTO_BATCH = "auto"
DEFAULT_BATCH = 16  # patches per graph run; see RunOptions

# Feeds for rows [start, stop) of a run: {graph input name: [stop - start, ...]}.
FeedsFor = Callable[[int, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RunOptions:
    """How graphs run: passed down from `load_model` / `Pipeline` to every session they open.

    device: "cpu", "cuda" (onnxruntime-gpu's CUDA provider; a DeviceError where it is missing) or
    "auto" (CUDA where onnxruntime has it, else the CPU). batch_size: patches per onnxruntime run
    (<= 0: all at once), or "auto": the size where throughput stops rising, measured once per
    session (`Session.tune_batch`); a graph whose batch dimension is fixed (Essentia's bs64
    EffNet) always runs at its own size. The default (None) is 16, or the family's own batch where
    smaller (MAEST: 1; `mirfeat.model.default_batch_size`): 16 is as fast as 64 on CPU for MusiCNN
    (123 vs 130 audio-s/s) with half the memory (a graph's activations grow with the batch:
    0.5 GB at 64); raise it, or use "auto", on a GPU. threads: onnxruntime intra-op threads
    (default: all cores). frame_sharing: use the split graph the conversion step wrote, where
    there is one (`mirfeat.framesharing`). precision: "fp32" (the converted graphs, held to
    Essentia's tolerances), or the variant the conversion step wrote beside the model: "int8"
    (NAME.int8.onnx, `python -m conversion quantize`; audio models only, heads stay fp32) or
    "fp16" (NAME.fp16.onnx, for CUDA); see `mirfeat.model.precision_variant`. io_binding: feed and
    fetch through onnxruntime's I/O binding with buffers reused across runs of one shape (None:
    on CUDA only).
    """

    device: str = "cpu"
    batch_size: int | str | None = None
    threads: int | None = None
    frame_sharing: bool = True
    precision: str = "fp32"
    io_binding: bool | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        valid = self.batch_size is None or self.batch_size == AUTO_BATCH
        valid = valid or (isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool))
        if not valid:
            raise ValueError(f"batch_size must be a number of patches, {AUTO_BATCH!r} or None, not {self.batch_size!r}")

    @property
    def auto_batch(self) -> bool:
        return self.batch_size == AUTO_BATCH

    def batch_size_or(self, auto: int, default: int = DEFAULT_BATCH) -> int:
        """batch_size as a number: `auto` where it is "auto", `default` (the model family's, see
        `mirfeat.model.default_batch_size`) where it is None."""
        if self.batch_size is None:
            return default
        return auto if isinstance(self.batch_size, str) else self.batch_size


_CUDA = "CUDAExecutionProvider"
_NO_CUDA = (
    "device='cuda' needs onnxruntime-gpu in place of onnxruntime, with the CUDA and cuDNN its release "
    "was built for: pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu[cuda,cudnn]'"
)


def cuda_available() -> bool:
    """Whether this onnxruntime has the CUDA provider (onnxruntime-gpu); not whether a GPU answers."""
    return _CUDA in ort.get_available_providers()


def resolve_device(device: str) -> str:
    """The device a RunOptions device runs on, "cpu" or "cuda": "auto" is CUDA where onnxruntime has it."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for "cpu", "cuda" or "auto" (a DeviceError when CUDA is
    asked for and missing)."""
    resolved = resolve_device(device)
    if resolved == "cpu":
        return ["CPUExecutionProvider"]
    if not cuda_available():
        raise DeviceError(f"{_NO_CUDA}; this onnxruntime offers only {', '.join(ort.get_available_providers())}")
    return [_CUDA, "CPUExecutionProvider"]


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

    def __init__(self, path: str | Path, options: RunOptions | None = None):
        self.path = Path(path)
        self.options = options = options or RunOptions()
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = options.threads or os.cpu_count() or 1
        session_options.log_severity_level = 3
        # Idle worker threads would otherwise spin for a while after each run and take the cores
        # from the numpy frontend that runs between batches (3-6x slower frontend on 2 cores).
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.device = resolve_device(options.device)
        self._session = self._open(session_options)
        if self.device == "cuda" and _CUDA not in self._session.get_providers():
            # onnxruntime-gpu falls back to the CPU, with only a log line, when CUDA or cuDNN fails to load.
            if options.device == "cuda":
                raise DeviceError(f"{path}: {_NO_CUDA}; its CUDA provider did not load (CUDA and cuDNN libraries?)")
            self.device = "cpu"
        use_binding = self.device == "cuda" if options.io_binding is None else options.io_binding
        self._bound = _BoundRuns(self._session, self.device) if use_binding else None
        self.batch_search: BatchSearch | None = None  # set by tune_batch
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_shapes = {i.name: list(i.shape) for i in self._session.get_inputs()}
        self.output_shapes = {o.name: list(o.shape) for o in self._session.get_outputs()}

    def _open(self, session_options: ort.SessionOptions) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(self.path), session_options, providers=providers_for(self.device))
        except DeviceError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            if self.device == "cuda":
                # Is it the model or the GPU (onnxruntime-gpu on a machine without one)? The CPU says.
                try:
                    ort.InferenceSession(str(self.path), session_options, providers=providers_for("cpu"))
                except Exception:
                    raise ModelError(f"{self.path}: not a valid ONNX model ({exc})") from None
                if self.options.device == "auto":
                    self.device = "cpu"
                    return self._open(session_options)
                raise DeviceError(f"{self.path}: onnxruntime's CUDA provider failed ({exc})") from None
            raise ModelError(f"{self.path}: not a valid ONNX model ({exc})") from None

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph's first input is fixed at, or None when it is dynamic."""
        first = self.input_shapes[self.input_names[0]]
        return first[0] if first and isinstance(first[0], int) and first[0] > 0 else None

    def resolve_output(self, name: str) -> str:
        return resolve_name(name, self.output_names)

    def resolve_input(self, name: str) -> str:
        return resolve_name(name, self.input_names)

    def run_batches(
        self, n_rows: int, feeds_for: FeedsFor, outputs: list[str], batch_size: int
    ) -> dict[str, np.ndarray]:
        """Run rows 0..n_rows in batches of `batch_size` (<= 0: all at once), every output at once.

        `feeds_for(start, stop)` gives the inputs of rows [start, stop). A graph with a fixed batch
        runs at that size: the last batch is padded with zero rows, and their outputs dropped.
        Returns {graph output name: [n_rows, ...]}.
        """
        step = self.fixed_batch or (n_rows if batch_size <= 0 else batch_size)
        step = max(step, 1)
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds_for(start, stop).items()}
            if self.fixed_batch and stop - start < self.fixed_batch:
                feeds = {k: _pad_rows(v, self.fixed_batch) for k, v in feeds.items()}
            for name, value in zip(outputs, self._run(outputs, feeds), strict=True):
                chunks[name].append(value[: stop - start])
        return {name: self.concat(parts, name) for name, parts in chunks.items()}

    def _run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime run: through I/O binding where the options ask for it."""
        if self._bound is not None:
            return self._bound.run(outputs, feeds)
        return self._session.run(outputs, feeds)

    @property
    def io_binding(self) -> bool:
        return self._bound is not None

    def tune_batch(
        self,
        feeds_for: FeedsFor,
        outputs: list[str],
        *,
        start: int = 1,
        limit: int = 1024,
        min_gain: float = 0.05,
        repeats: int = 3,
        clock: Callable[[], float] = time.perf_counter,
    ) -> BatchSearch:
        """The batch size where rows per second stop rising (`search_batch_size`), measured on this
        session with `feeds_for(0, batch)` rows; kept as `batch_search` and measured only once."""
        if self.batch_search is None:

            def rows_per_second(batch: int) -> float:
                feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds_for(0, batch).items()}
                self._run(outputs, feeds)  # the first run of a shape allocates (on CUDA: picks conv algorithms)
                best = min(_timed(lambda: self._run(outputs, feeds), clock) for _ in range(max(repeats, 1)))
                return batch / max(best, 1e-9)

            self.batch_search = search_batch_size(rows_per_second, start=start, limit=limit, min_gain=min_gain)
            log.info("%s: %s", self.path.name, self.batch_search.describe())
        return self.batch_search

    def run(
        self, inputs: np.ndarray, outputs: list[str], input_name: str | None = None, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """Run [n, ...] inputs of one input tensor in batches: {graph output name: [n, ...]}."""
        name = input_name or self.input_names[0]
        return self.run_batches(len(inputs), lambda a, b: {name: inputs[a:b]}, outputs, batch_size)

    def run_once(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime run with graph names as they are: no batching, no name resolution."""
        return self._run(outputs, feeds)

    def run_feeds(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One run of a graph with several inputs; names as the schema or the graph spell them."""
        inputs = {self.resolve_input(name): np.asarray(value) for name, value in feeds.items()}
        names = [self.resolve_output(name) for name in outputs] if outputs else self.output_names
        return dict(zip(outputs or names, self._run(names, inputs), strict=True))

    def concat(self, parts: list[np.ndarray], name: str) -> np.ndarray:
        """Batches of one output joined on the batch axis; no batches: an empty array of its shape."""
        if parts:
            return np.concatenate(parts, axis=0)
        # No input rows: an empty result with the output's known trailing shape.
        trailing = [d if isinstance(d, int) and d > 0 else 0 for d in self.output_shapes[name][1:]]
        return np.zeros([0, *trailing], dtype=np.float32)


def _timed(run: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    run()
    return clock() - start


@dataclass(frozen=True)
class BatchSearch:
    """What `search_batch_size` measured. batch: the size chosen (patches per run); rates: rows per
    second at each size tried, in the order tried; reason: why the search stopped."""

    batch: int
    rates: dict[int, float] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        tried = ", ".join(f"{b}: {r:.0f}" for b, r in self.rates.items())
        return f"batch_size auto: {self.batch} ({self.reason}; rows/s by batch {tried})"


def _out_of_memory(exc: BaseException) -> bool:
    # onnxruntime reports a failed allocation as a generic RuntimeException/Fail: known by its message.
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "alloc" in text or "out of memory" in text


def search_batch_size(
    rows_per_second: Callable[[int], float], *, start: int = 1, limit: int = 1024, min_gain: float = 0.05
) -> BatchSearch:
    """Double the batch from `start` while rows per second rise by more than `min_gain` (0.05: 5%),
    up to `limit`; a size that runs out of memory ends the search at the last size that ran.
    Keeps the smaller size when doubling gains less: the same speed for half the memory."""
    rates: dict[int, float] = {}
    batch, best = start, start
    reason = f"reached the limit of {limit}"
    while True:
        try:
            rates[batch] = rows_per_second(batch)
        except Exception as exc:
            if batch == start or not _out_of_memory(exc):
                raise
            reason = f"out of memory at {batch}"
            break
        if batch > start and rates[batch] <= rates[best] * (1 + min_gain):
            reason = f"{batch} gained less than {min_gain:.0%} over {best}"
            break
        best = batch
        if batch * 2 > limit:
            break
        batch *= 2
    return BatchSearch(best, rates, reason)


class _BoundRuns:
    """Runs through onnxruntime's I/O binding: per input shape (and thread), input and output
    buffers on the session's device, allocated on the first run and reused by the next ones. Inputs
    are copied in, outputs copied back to host memory once per run. On the CPU the same code runs
    with the CPU provider's buffers (tests run it there)."""

    _KEEP = 8  # shapes kept: a run's full batches, its last batch, frame-sharing edge windows

    def __init__(self, session: ort.InferenceSession, device: str):
        self._session = session
        self._device = device
        self._lock = threading.Lock()
        self._buffers: OrderedDict[tuple, tuple[ort.IOBinding, dict[str, ort.OrtValue], bool]] = OrderedDict()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        # Per thread: the runner's workers run the frame-sharing graph at once, each in its buffers.
        key = (threading.get_ident(), tuple(outputs), tuple((k, v.shape, v.dtype.str) for k, v in feeds.items()))
        with self._lock:
            entry = self._buffers.pop(key, None)
            if entry is None:
                entry = self._bind(outputs, feeds)
            else:
                for name, value in feeds.items():
                    entry[1][name].update_inplace(value)
            self._buffers[key] = entry
            while len(self._buffers) > self._KEEP:
                self._buffers.popitem(last=False)
        binding, _, outputs_kept = entry
        self._session.run_with_iobinding(binding)
        if not outputs_kept:
            # Outputs were allocated by this first run: bind them, so later runs write into them.
            for name, value in zip(outputs, binding.get_outputs(), strict=True):
                binding.bind_ortvalue_output(name, value)
            with self._lock:
                if key in self._buffers:
                    self._buffers[key] = (binding, entry[1], True)
        return binding.copy_outputs_to_cpu()

    def _bind(
        self, outputs: list[str], feeds: dict[str, np.ndarray]
    ) -> tuple[ort.IOBinding, dict[str, ort.OrtValue], bool]:
        binding = self._session.io_binding()
        inputs = {}
        for name, value in feeds.items():
            buffer = ort.OrtValue.ortvalue_from_shape_and_type(value.shape, value.dtype, self._device, 0)
            buffer.update_inplace(value)
            binding.bind_ortvalue_input(name, buffer)
            inputs[name] = buffer
        for name in outputs:
            binding.bind_output(name, self._device, 0)
        return binding, inputs, False


def _pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    padded = np.zeros((size, *rows.shape[1:]), dtype=rows.dtype)
    padded[: len(rows)] = rows
    return padded


# Published ONNX files rename outputs by purpose (Essentia's discogs-effnet-bsdynamic-1.onnx:
# `PartitionedCall:0` -> `activations`, `PartitionedCall:1` -> `embeddings`).
_PURPOSE_ALIASES = {"predictions": ("activations", "predictions"), "embeddings": ("embeddings",)}


class ModelGraph:
    """A session and its model's metadata: input and output names resolved once, here.

    `output_names` are the metadata's (schema) names; `graph_name` maps those, or the graph's
    own names, to what the session calls them.
    """

    def __init__(self, session: Session, metadata: ModelMetadata, input_name: str | None = None):
        self.session = session
        where = metadata.source or str(session.path)
        schema_input = metadata.inputs[0] if metadata.inputs else None
        try:
            self.input_name = self._resolve_input(input_name or schema_input)
        except KeyError as exc:
            field = "the input name given" if input_name else "schema.inputs[0].name"
            raise ModelError(f"{where}: {field}: {exc.args[0]}") from None
        specs = metadata.outputs or [OutputSpec(name, "") for name in session.output_names]
        self.output_names = [spec.name for spec in specs]
        self._graph_names = {}
        for i, spec in enumerate(specs):
            try:
                self._graph_names[spec.name] = self._resolve_output(spec)
            except KeyError as exc:
                raise ModelError(f"{where}: schema.outputs[{i}].name: {exc.args[0]}") from None

    def _resolve_input(self, name: str | None) -> str:
        """The graph's input for a schema name; a single-input graph takes any name."""
        if name is not None:
            try:
                return self.session.resolve_input(name)
            except KeyError:
                if len(self.session.input_names) != 1:
                    raise
        return self.session.input_names[0]

    def _resolve_output(self, spec: OutputSpec) -> str:
        """Schema output -> graph output: by name, else the only output of the schema's width, else
        the output named after the schema purpose."""
        try:
            return self.session.resolve_output(spec.name)
        except KeyError:
            pass
        width = spec.shape[-1] if spec.shape and isinstance(spec.shape[-1], int) else None
        shapes = self.session.output_shapes
        same_width = [name for name, shape in shapes.items() if width and shape and shape[-1] == width]
        if len(same_width) == 1:
            return same_width[0]
        for alias in _PURPOSE_ALIASES.get(spec.purpose, ()):
            if alias in self.session.output_names:
                return alias
        return self.session.resolve_output(spec.name)  # raises with the graph's names

    def graph_name(self, name: str) -> str:
        """A schema output name, or one of the graph's own output names -> the graph's name."""
        for key in (name, f"{name}:0", name.removesuffix(":0")):
            if key in self._graph_names:
                return self._graph_names[key]
        return self.session.resolve_output(name)

    def output_width(self, name: str) -> int | None:
        """The last axis of an output (schema or graph name), None where the graph leaves it open."""
        shape = self.session.output_shapes[self.graph_name(name)]
        return shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None

    @property
    def input_shape(self) -> list:
        """The graph input's shape, batch axis included (ints, or names for dynamic axes)."""
        return self.session.input_shapes[self.input_name]

    def fit_to_input(self, rows: np.ndarray) -> np.ndarray:
        """Add a singleton axis the graph's input has and `rows` lacks ([B, 1, T, F] or [B, T, F, 1])."""
        shape = self.input_shape
        if len(shape) == rows.ndim + 1:
            return rows[:, None] if shape[1] == 1 else rows[..., None]
        return rows

    def run(self, rows: np.ndarray, outputs: list[str], batch_size: int) -> dict[str, np.ndarray]:
        """Model inputs [n, ...] -> {requested name: raw graph output [n, ...]}."""
        graph_names = [self.graph_name(name) for name in outputs]
        raw = self.session.run(self.fit_to_input(rows), graph_names, self.input_name, batch_size)
        return {name: raw[graph] for name, graph in zip(outputs, graph_names, strict=True)}
