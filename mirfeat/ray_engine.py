"""`mirfeat run --engine ray`: the same job as `mirfeat.run`, spread over a Ray cluster (the `ray` extra).

    settings = mirfeat.ray_engine.RaySettings(device="cuda", concurrency=4)  # 4 model actors, a GPU each
    ds = mirfeat.ray_engine.run_dataset(paths, ["msd-musicnn-1"], settings)  # a ray.data.Dataset of result rows
    ds.write_parquet("out/ray-parquet")                                      # Ray's Parquet writer

Decoding and the frontend run in a pool of decode actors (`Dataset.map` with a callable class, one
row per file; each actor loads the audio model once): each file becomes its bands ([frames, bands]
float32, sent as bytes), which are smaller than its patches (they overlap) and than the per-frame
features of frame sharing. The model runs in an actor pool (`map_batches` with a
callable class: one onnxruntime session per actor, `num_gpus` per actor on CUDA) that cuts the
patches, runs the patches of all the files in a batch together (cross-file batching, as the local
engine does), then the heads, writes each file's per-patch arrays when asked (npz or Parquet, as
the local engine writes them) and makes its summary row. Rows have the local engine's summary
columns (`runner.flat_row`: path, size, mtime_ns, duration, patches, MODEL:top, MODEL:LABEL) plus
`error`: a file that fails is a row with its reason there (its other columns null), never a failed
job.

`run` (the CLI's `--engine ray`) fills OUTDIR exactly as the local engine does (`runner.OutputDir`):
it skips the files the journal lists, streams the rows back to this process, which appends each to
summary.jsonl or errors.jsonl as it arrives, and writes run.json and the summary table; the actors
write the arrays. A run can be resumed by either engine.

Model paths and names are resolved on each worker: paths must exist on every node; names use each
node's model cache. OUTDIR must be writable at the same path on every node (a shared filesystem) for
the arrays. Ray is imported inside functions: `import mirfeat` does not need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mirfeat.errors import MirfeatError, failure_reason
from mirfeat.model import Head, Model
from mirfeat.patches import patch_batches
from mirfeat.pipeline import FileFailure
from mirfeat.runner import (
    OutputDir,
    array_file,
    expand_inputs,
    file_key,
    finish_file,
    flat_row,
    load_models,
    progress_bar,
    run_rows,
    save_arrays,
)
from mirfeat.runtime import DEVICES, RunOptions

FILES_PER_BATCH = 8  # files a model actor takes at a time (their patches share graph batches)
BASE_COLUMNS = ("path", "size", "mtime_ns", "duration", "patches")


@dataclass(frozen=True)
class RaySettings:
    """How a Ray run spreads its files and runs its models (`run_dataset`, `run`, each model actor).

    batch_size: patches per onnxruntime run in a model actor (None: the family's; see `load_model`).
    device: "cpu", "cuda" or "auto" (CUDA where the cluster has GPUs). precision: see `load_model`.
    num_gpus: per model actor, with device "cuda" (None: 1). concurrency: model actors, or a
    (min, max) autoscaling range; on CPU at most the cluster's CPUs less one, which decoding needs.
    threads: onnxruntime threads per actor (None: one per core of the actor's node, as
    `RunOptions`; with several CPU actors on a node, give cores / actors). top: classes in each summary's
    top list. last_patch_mode: see `mirfeat.patches`. files_per_batch: files a model actor takes at
    a time (their patches share graph batches)."""

    batch_size: int | str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    num_gpus: float | None = None
    concurrency: int | tuple[int, int] = 1
    threads: int | None = None
    top: int = 5
    last_patch_mode: str = "discard"
    files_per_batch: int = FILES_PER_BATCH

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {self.device!r}")

    def run_options(self) -> RunOptions:
        """A model actor's session options."""
        return RunOptions(
            device=self.device, batch_size=self.batch_size, threads=self.threads, precision=self.precision
        )


def driver_models(models: Sequence[str | os.PathLike], settings: RaySettings) -> tuple[Model, list[Head]]:
    """The run's models loaded once on the driver, on its CPU (the actors load their own): fails
    early, before any Ray work, on a missing model or precision variant or a head that does not fit."""
    return load_models([str(m) for m in models], RunOptions(device="cpu", precision=settings.precision))


class FileDecoder:
    """A decode actor (`Dataset.map` with this class): loads the audio model once (its frontend and
    decoding settings; an actor decodes many files), then turns each `{"path": ...}` row into a row
    with the file's key, its length in samples, its bands as float32 bytes ([n_frames, n_bands]) and
    `error` (None, or the reason)."""

    def __init__(self, model_path: str):
        self.model = load_models([model_path], RunOptions(device="cpu", threads=1))[0]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
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
            model = self.model
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


def summary_schema(model: Model, heads: list[Head], journal: bool = False):
    """The result rows' Arrow schema: the local engine's flat summary columns, then `error`, then
    with `journal` `summary`: the row as the local engine's summary.jsonl has it (JSON)."""
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
        if (isinstance(m, Model) and (m.family.tensor_output or not m.family.class_summary)) or not m.labels:
            continue  # no clip-level means in the summary
        columns = [(f"{m.name}:top", pa.list_(pa.string()))] + [
            (f"{m.name}:{label}", pa.float64()) for label in m.labels
        ]
        for name, kind in columns:
            if name not in seen:
                seen.add(name)
                fields.append(pa.field(name, kind))
    fields.append(pa.field("error", pa.string()))
    if journal:
        fields.append(pa.field("summary", pa.string()))
    return pa.schema(fields)


class _Item:
    def __init__(self, index: int):
        self.index = index


class ModelActor:
    """A model actor (`map_batches` with this class): loads the models once, then turns batches of
    `FileDecoder` rows into result rows (a pyarrow Table with `summary_schema`). arrays_dir: where
    each file's per-patch arrays go (`runner.save_arrays`, in `arrays_format`: npz or parquet)."""

    def __init__(
        self,
        models: Sequence[str],
        settings: RaySettings,
        arrays_dir: str | None = None,
        arrays_format: str = "npz",
        journal: bool = False,
    ):
        self.model, self.heads = load_models(list(models), settings.run_options())
        self.top, self.last_patch_mode = settings.top, settings.last_patch_mode
        self.arrays_dir, self.arrays_format, self.journal = arrays_dir, arrays_format, journal
        self.schema = summary_schema(self.model, self.heads, journal)
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
                    path = Path(row["path"])
                    result = finish_file(model, self.heads, path, row["samples"], joined, self.top, key)
                    if self.arrays_dir is not None:
                        save_arrays(array_file(Path(self.arrays_dir), path, self.arrays_format), result)
                    summary = result.summary
                    results.append({**flat_row(summary), "error": None, "summary": json.dumps(summary)})
                    continue
                except Exception as exc:
                    errors[i] = failure_reason(Path(row["path"]), exc)
            results.append({**key, "error": errors[i]})
        if not self.journal:
            for out_row in results:
                out_row.pop("summary", None)
        return pa.Table.from_pylist(results, schema=self.schema)


def run_dataset(
    paths_or_dataset,
    models: Sequence[str | os.PathLike],
    settings: RaySettings = RaySettings(),
    *,
    arrays_dir: str | os.PathLike | None = None,
    arrays_format: str = "npz",
    journal: bool = False,
):
    """Run an audio model (and heads on its embeddings) over files on Ray: a lazy `ray.data.Dataset`
    of result rows (see the module docstring), one per file, in no particular order.

    paths_or_dataset: file paths (taken as they are; `mirfeat.runner.expand_inputs` expands folders,
    globs and manifests), or a Dataset with a `path` column. settings: how the run spreads and runs
    (`RaySettings`). arrays_dir: a folder every node can write: each file's per-patch arrays go
    there (`runner.save_arrays`, arrays_format "npz" or "parquet"). journal: add the `summary` column."""
    model, _ = driver_models(models, settings)
    return _result_rows(paths_or_dataset, models, model, settings, arrays_dir, arrays_format, journal)


def _result_rows(
    paths_or_dataset,
    models: Sequence[str | os.PathLike],
    model: Model,
    settings: RaySettings,
    arrays_dir: str | os.PathLike | None,
    arrays_format: str,
    journal: bool,
):
    """`run_dataset` on models the driver has loaded (`driver_models`; `model`: the audio model)."""
    import ray
    import ray.data

    if settings.device == "auto":  # the cluster's GPUs, not this driver's onnxruntime, decide
        settings = dataclasses.replace(settings, device="cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu")
    if isinstance(paths_or_dataset, ray.data.Dataset):
        ds = paths_or_dataset.select_columns(["path"])
    else:
        ds = ray.data.from_items([{"path": str(p)} for p in paths_or_dataset])
    cpus = int(ray.cluster_resources().get("CPU", 1))
    concurrency = settings.concurrency
    if settings.device == "cpu" and isinstance(concurrency, int):
        # Each CPU actor holds a CPU: leave at least one to the decode actors, or nothing is decoded.
        concurrency = max(1, min(concurrency, cpus - 1))
    # Decoding fans out over the CPUs the model actors leave (Ray grows the pool while files wait,
    # within the free CPUs); the model actors stay as few as `concurrency`.
    decoders = ray.data.ActorPoolStrategy(min_size=1, max_size=cpus)
    # (Dataset.map's annotation names functions only; it takes a callable class as map_batches does.)
    prepared = ds.map(
        FileDecoder,  # type: ignore[arg-type]
        fn_constructor_kwargs={"model_path": str(model.path)},
        compute=decoders,
    )
    pool = (
        ray.data.ActorPoolStrategy(size=concurrency)
        if isinstance(concurrency, int)
        else ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    )
    num_gpus = settings.num_gpus
    return prepared.map_batches(
        ModelActor,
        fn_constructor_kwargs={
            "models": [str(m) for m in models],
            "settings": settings,
            "arrays_dir": None if arrays_dir is None else str(Path(arrays_dir).resolve()),
            "arrays_format": arrays_format,
            "journal": journal,
        },
        batch_size=settings.files_per_batch,
        batch_format="pyarrow",
        compute=pool,
        num_gpus=(1 if num_gpus is None else num_gpus) if settings.device == "cuda" else 0,
    )


def run(
    inputs,
    models: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: RaySettings = RaySettings(),
    *,
    address: str | None = None,
    format: str = "jsonl",
    arrays: bool = True,
    resume: bool = True,
    progress: bool | None = None,
) -> Iterator[dict[str, Any] | FileFailure]:
    """`mirfeat run --engine ray`: `mirfeat.run`'s job and OUTDIR on Ray. Expands the inputs, skips
    the files OUTDIR's journal lists (resume), connects to Ray (`address`: "auto",
    "ray://host:10001"; None: $RAY_ADDRESS, else a local cluster started here) and runs
    `run_dataset` on the rest with `settings`. Yields, as each file is done, its summary row (the
    line appended to summary.jsonl) or a FileFailure (appended to errors.jsonl)."""
    import ray

    output = OutputDir(out_dir, format=format, arrays=arrays, resume=resume)
    model, heads = driver_models(models, settings)
    files = expand_inputs(inputs)
    parameters = {
        "engine": "ray",
        "address": address,
        "format": format,
        "arrays": arrays,
        "resume": resume,
        **dataclasses.asdict(settings),
    }
    if settings.batch_size is None:  # the family's
        parameters["batch_size"] = model.batch_size
    pending = output.start(model, heads, files, parameters)
    given = {str(path): path for path, _ in pending} | {key["path"]: path for path, key in pending if key}
    bar = progress_bar(len(pending), progress)
    try:
        if not pending:
            return
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        arrays_dir = output.path / "arrays" if arrays else None
        ds = _result_rows(
            [str(p) for p, _ in pending], models, model, settings, arrays_dir, output.arrays_format, journal=True
        )
        # Rows come back as the actors finish them: each is journalled at once, so a run killed
        # at any moment loses at most the files in flight.
        for batch in ds.select_columns(["path", "error", "summary"]).iter_batches(batch_format="pyarrow"):
            for row in batch.to_pylist():
                if row["error"] is not None:
                    path = given.get(row["path"], Path(row["path"]))
                    failure = output.record_failure(path, row["error"])
                    bar.update()
                    yield failure
                    continue
                summary = json.loads(row["summary"])
                output.record(summary)
                bar.done(summary["duration"])
                yield summary
    finally:
        bar.close()
        output.close()
