"""`mirfeat run --engine ray`: the same job as `mirfeat.run`, spread over a Ray cluster (the `ray` extra).

    ds = mirfeat.ray_engine.run_dataset(paths, ["msd-musicnn-1"])  # a ray.data.Dataset of result rows
    ds.write_parquet("out/ray-parquet")

Decoding and the frontend run in Ray tasks (`Dataset.map`, one row per file): each file becomes its
bands ([frames, bands] float32, sent as bytes), which are smaller than its patches (they overlap) and
than the per-frame features of frame sharing. The model runs in an actor pool (`map_batches` with a
callable class: one onnxruntime session per actor, `num_gpus` per actor on CUDA) that cuts the
patches, runs the patches of all the files in a batch together (cross-file batching, as the local
engine does), then the heads, and makes each file's summary row. Rows have the local engine's
summary columns (`runner.flat_row`: path, size, mtime_ns, duration, patches, MODEL:top, MODEL:LABEL)
plus `error`: a file that fails is a row with its reason there (its other columns null), never a
failed job. Per-patch arrays and resuming are the local engine's only.

Model paths and names are resolved on each worker: paths must exist on every node; names use each
node's model cache. Ray is imported inside functions: `import mirfeat` does not need it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mirfeat.errors import MirfeatError, failure_reason
from mirfeat.model import Head, Model
from mirfeat.patches import patch_batches
from mirfeat.runner import file_key, finish_file, flat_row, load_models, run_rows
from mirfeat.runtime import DEFAULT_BATCH, RunOptions

FILES_PER_BATCH = 8  # files a model actor takes at a time (their patches share graph batches)
DECODE_CALLS = 200
BASE_COLUMNS = ("path", "size", "mtime_ns", "duration", "patches")

# Per worker process: the audio model the decode tasks read the signature from (a worker runs
# many tasks; loading a model once per process, not once per file).
_FRONTENDS: dict[str, Model] = {}


def _frontend(model_path: str) -> Model:
    if model_path not in _FRONTENDS:
        loaded = load_models([model_path], RunOptions(device="cpu", threads=1))[0]
        _FRONTENDS[model_path] = loaded
    return _FRONTENDS[model_path]


def prepare_file(row: dict[str, Any], *, model_path: str) -> dict[str, Any]:
    """Decode a file and compute its bands (a Ray task): a row with the file's key, its length in
    samples, its bands as float32 bytes ([n_frames, n_bands]) and `error` (None, or the reason)."""
    path = Path(row["path"])
    out: dict[str, Any] = {
        "path": str(path),
        "size": None,
        "mtime_ns": None,
        "samples": 0,
        "n_frames": 0,
        "n_bands": 0,
        "bands": b"",
        "error": None,
    }
    with contextlib.suppress(OSError):  # a file that cannot be read: the decoder below says why
        out.update(file_key(path))
    try:
        model = _frontend(model_path)
        samples = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal samples
            for block in model.audio_blocks(path):
                samples += len(block)
                yield block

        chunks = [np.asarray(c, dtype=np.float32) for c in model.family.stream_bands(counted())]
        if samples == 0:
            raise MirfeatError(f"{path}: no audio samples (empty input)")
        chunks = [c for c in chunks if len(c)]
        bands = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
        out.update(samples=samples, n_frames=bands.shape[0], n_bands=bands.shape[1], bands=bands.tobytes())
    except Exception as exc:  # this file's failure, as a row
        out["error"] = failure_reason(path, exc)
    return out


def summary_schema(model: Model, heads: list[Head]):
    """The result rows' Arrow schema: the local engine's flat summary columns, then `error`."""
    import pyarrow as pa

    fields = [
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("duration", pa.float64()),
        pa.field("patches", pa.int64()),
    ]
    seen = set(BASE_COLUMNS)
    for m in [model, *heads]:
        if (isinstance(m, Model) and m.family.tensor_output) or not m.labels:
            continue  # no clip-level means in the summary
        columns = [(f"{m.name}:top", pa.string())] + [(f"{m.name}:{label}", pa.float64()) for label in m.labels]
        for name, kind in columns:
            if name not in seen:
                seen.add(name)
                fields.append(pa.field(name, kind))
    fields.append(pa.field("error", pa.string()))
    return pa.schema(fields)


class _Item:
    def __init__(self, index: int):
        self.index = index


class ModelActor:
    """A model actor (`map_batches` with this class): loads the models once, then turns batches of
    `prepare_file` rows into result rows (a pyarrow Table with `summary_schema`)."""

    def __init__(
        self,
        models: Sequence[str],
        batch_size: int = DEFAULT_BATCH,
        device: str = "cpu",
        threads: int | None = None,
        top: int = 5,
        last_patch_mode: str = "discard",
        precision: str = "fp32",
    ):
        options = RunOptions(device=device, batch_size=batch_size, threads=threads, precision=precision)
        self.model, self.heads = load_models(list(models), options)
        self.top, self.last_patch_mode = top, last_patch_mode
        self.schema = summary_schema(self.model, self.heads)
        self.graph_names = [self.model.graph.graph_name(n) for n in self.model.output_names]

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows: list[dict[str, Any]] = batch.to_pylist()
        errors: dict[int, str] = {i: r["error"] for i, r in enumerate(rows) if r["error"] is not None}
        outputs: dict[int, dict[str, list[np.ndarray]]] = {}
        waiting: list[tuple[_Item, dict[str, np.ndarray]]] = []

        def flush() -> None:
            nonlocal waiting
            try:
                run_rows(self.model, waiting, self.graph_names, outputs)
            except Exception as exc:  # every file with rows in this batch fails
                for item, _ in waiting:
                    errors.setdefault(item.index, failure_reason(Path(rows[item.index]["path"]), exc))
            waiting = []

        model = self.model
        for i, row in enumerate(rows):
            if i in errors:
                continue
            outputs[i] = {g: [] for g in self.graph_names}
            if row["n_frames"] == 0:
                continue
            try:
                bands = np.frombuffer(row["bands"], np.float32).reshape(row["n_frames"], row["n_bands"])
                for part in patch_batches(
                    [bands], model.patch_size, model.patch_hop_size, self.last_patch_mode, model.batch_size
                ):
                    waiting.append((_Item(i), model.patch_feeds(part)))
                    if sum(len(next(iter(f.values()))) for _, f in waiting) >= model.batch_size:
                        flush()
            except Exception as exc:
                errors[i] = failure_reason(Path(row["path"]), exc)
        if waiting:
            flush()

        results = []
        for i, row in enumerate(rows):
            key = {k: row[k] for k in ("path", "size", "mtime_ns")}
            if i not in errors:
                try:
                    joined = {g: model.graph.session.concat(outputs[i][g], g) for g in self.graph_names}
                    result = finish_file(model, self.heads, Path(row["path"]), row["samples"], joined, self.top)
                    results.append({**flat_row({**key, **result.summary}), "error": None})
                    continue
                except Exception as exc:
                    errors[i] = failure_reason(Path(row["path"]), exc)
            results.append({**key, "error": errors[i]})
        return pa.Table.from_pylist(results, schema=self.schema)


def run_dataset(
    paths_or_dataset,
    models: Sequence[str | os.PathLike],
    *,
    batch_size: int = DEFAULT_BATCH,
    device: str = "cpu",
    num_gpus: float | None = None,
    concurrency: int | tuple[int, int] = 1,
    threads: int | None = None,
    top: int = 5,
    last_patch_mode: str = "discard",
    files_per_batch: int = FILES_PER_BATCH,
    precision: str = "fp32",
):
    """Run an audio model (and heads on its embeddings) over files on Ray: a lazy `ray.data.Dataset`
    of result rows (see the module docstring), one per file, in no particular order.

    paths_or_dataset: file paths (taken as they are; `mirfeat.runner.expand_inputs` expands folders,
    globs and manifests), or a Dataset with a `path` column. concurrency: model actors (or a
    (min, max) autoscaling range); on CPU at most the cluster's CPUs less one, which decoding needs.
    num_gpus: per actor, with device "cuda" (default 1).
    threads: onnxruntime threads per actor (default: onnxruntime's). precision: see `load_model`."""
    import ray
    import ray.data

    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, not {device!r}")
    names = [str(m) for m in models]
    # Fail early, here (a missing int8 copy too).
    model, _ = load_models(names, RunOptions(device="cpu", batch_size=batch_size, precision=precision))
    if isinstance(paths_or_dataset, ray.data.Dataset):
        ds = paths_or_dataset.select_columns(["path"])
    else:
        ds = ray.data.from_items([{"path": str(p)} for p in paths_or_dataset])
    if device == "cpu" and isinstance(concurrency, int):
        # Each CPU actor holds a CPU: leave at least one to the decode tasks, or nothing is decoded.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        concurrency = max(1, min(concurrency, cpus - 1))
    # Remote args unlike the actors' (max_calls) keep Ray from fusing this map into them: decoding
    # fans out over the cluster's CPUs as tasks, the model actors stay as few as `concurrency`.
    # A worker process also starts afresh (and reloads the frontend model) every DECODE_CALLS files.
    prepared = ds.map(functools.partial(prepare_file, model_path=str(model.path)), max_calls=DECODE_CALLS)
    pool = (
        ray.data.ActorPoolStrategy(size=concurrency)
        if isinstance(concurrency, int)
        else ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    )
    return prepared.map_batches(
        ModelActor,
        fn_constructor_kwargs={
            "models": names,
            "batch_size": batch_size,
            "device": device,
            "threads": threads,
            "top": top,
            "last_patch_mode": last_patch_mode,
            "precision": precision,
        },
        batch_size=files_per_batch,
        batch_format="pyarrow",
        compute=pool,
        num_gpus=(1 if num_gpus is None else num_gpus) if device == "cuda" else 0,
    )


def run(
    inputs,
    models: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    **options,
) -> list[dict[str, Any]]:
    """`mirfeat run --engine ray`: expand the inputs, connect to Ray (`address`: "auto", "ray://host:10001";
    None: $RAY_ADDRESS, else a local cluster started here), run `run_dataset` and write its rows to
    OUT_DIR/ray-parquet/ with Ray's Parquet writer. Returns [{"path", "error"}] per failed file."""
    import ray
    import ray.data

    from mirfeat.runner import expand_inputs

    paths = [str(p) for p in expand_inputs(inputs)]
    if not paths:
        raise MirfeatError("no input files")
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    ds = run_dataset(paths, models, **options).materialize()
    target = Path(out_dir) / "ray-parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.write_parquet(str(target.resolve()), mode=ray.data.SaveMode.OVERWRITE)  # a rerun replaces it
    return [r for r in ds.select_columns(["path", "error"]).take_all() if r["error"] is not None]
