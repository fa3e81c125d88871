"""`mirfeat run`: a library of audio files through one embedding model and its heads, resumable.

    for item in mirfeat.run(["music/"], ["msd-musicnn-1"], "out/"):
        ...  # FileResult or FileFailure, as each file is done

Worker threads decode each file and compute its bands and patch inputs; the calling thread runs the
model on batches that mix patches of several files (cross-file batching: short clips fill whole
batches), then the heads on each file's embeddings. Results go to OUTDIR as each file completes:

    summary.jsonl   one line per file (path, size, mtime, duration, patches, per model: top-k and
                    clip-level means), appended and flushed as each file is done: the run's journal
    summary.csv / summary.parquet   the same table, written at the end with --format csv / parquet
    arrays/*.npz    per-patch outputs and patch times, one file per input (written, then renamed);
                    arrays/*.parquet instead with --format parquet (a row per patch: patch_time and
                    one fixed-size list column per output, its per-patch shape in the field metadata)
    errors.jsonl    one line per file that failed, with the reason
    run.json        models (name, path, sha256; the int8 graph run, if any), mirfeat's version and the
                    run's parameters
    .lock           locked while a run writes: a second run into the same OUTDIR is refused

A rerun with the same OUTDIR skips the files the journal lists with the same size and mtime, so a
run killed at any moment loses at most the files in flight. It must use the same models and the
settings that change results (precision, top, last-patch mode, arrays), or start afresh.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mirfeat.errors import MirfeatError, display_name, failure_reason
from mirfeat.filelock import try_lock, unlock
from mirfeat.model import (
    Head,
    Model,
    essentia_rows,
    load_model,
)
from mirfeat.patches import patch_batches
from mirfeat.pipeline import FileFailure
from mirfeat.results import Result
from mirfeat.runtime import RunOptions

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mp4"}
# The summary table (jsonl and npz: the journal alone) and the per-patch arrays (parquet: Parquet, else .npz).
FORMATS = ("jsonl", "csv", "npz", "parquet")


@dataclass
class FileResult:
    """One file's outputs. outputs: {"MODEL/OUTPUT": [patches, ...]} for the embedding model's
    outputs and each head's predictions; patch_times: [patches] seconds; summary: the summary row."""

    path: str
    duration: float
    patch_times: np.ndarray
    outputs: dict[str, np.ndarray]
    summary: dict = field(default_factory=dict)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, directories (recursively, audio extensions), glob patterns, and manifests: `@list.txt`
    (one path a line) or `@list.csv` (a `path` column), relative paths taken from the manifest's
    folder. Sorted within each directory or pattern; duplicates dropped, first place kept. A directory
    or pattern with no audio file in it is an error (MirfeatError naming it): a typo, not an empty
    run."""
    paths: list[Path] = []
    for item in map(str, inputs):
        if item.startswith("@"):
            paths += _read_manifest(Path(item[1:]))
        elif Path(item).is_dir():
            found = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            if not found:
                raise MirfeatError(f"{item}: no audio files in this directory ({', '.join(AUDIO_EXTENSIONS)})")
            paths += found
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise MirfeatError(f"{item}: no files match this pattern")
            paths += found
        else:
            paths.append(Path(item))  # a missing file is reported as that file's failure
    seen: set[str] = set()
    return [p for p in paths if not (str(p) in seen or seen.add(str(p)))]  # type: ignore[func-returns-value]


def _read_manifest(manifest: Path) -> list[Path]:
    try:
        text = manifest.read_text()
    except OSError as exc:
        raise MirfeatError(f"{manifest}: cannot read the manifest ({exc})") from None
    if manifest.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "path" not in rows[0]:
            raise MirfeatError(f"{manifest}: a CSV manifest needs a 'path' column")
        names = [row["path"] for row in rows]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [p if p.is_absolute() else manifest.parent / p for p in map(Path, names)]


def file_key(path: Path) -> dict:
    """A file's identity in the summary: resolved path, size and mtime_ns (OSError when it cannot be read)."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Journal:
    """summary.jsonl and errors.jsonl, appended line by line and flushed; read back to resume."""

    def __init__(self, out_dir: Path, resume: bool):
        self.summary_path, self.errors_path = out_dir / "summary.jsonl", out_dir / "errors.jsonl"
        self.done: set[tuple] = set()
        if resume:
            self.done = {self._key(row) for row in self.rows()}
        else:
            for path in (self.summary_path, self.errors_path):
                path.unlink(missing_ok=True)
        self._repair(self.summary_path)
        self._repair(self.errors_path)

    @staticmethod
    def _key(row: dict) -> tuple:
        return row["path"], row["size"], row["mtime_ns"]

    @staticmethod
    def _repair(path: Path) -> None:
        """Drop a last line cut short by a kill, so the next line starts clean."""
        if not path.is_file() or path.stat().st_size == 0:
            return
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])

    def rows(self) -> list[dict]:
        if not self.summary_path.is_file():
            return []
        rows = []
        for line in self.summary_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return rows

    def is_done(self, key: dict) -> bool:
        return self._key(key) in self.done

    def forget_errors(self, paths: set[str]) -> None:
        """Drop errors.jsonl's lines for these files (this run retries them, or did them since)."""
        if not self.errors_path.is_file():
            return
        lines = self.errors_path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _error_path(line) not in paths]
        if len(kept) != len(lines):
            self.errors_path.write_text("".join(kept))

    def append(self, path: Path, row: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _error_path(line: str) -> str | None:
    try:
        return json.loads(line).get("path")
    except (ValueError, AttributeError):
        return None


class _Work:
    """One file between a worker and the inference loop: its patch inputs, batch by batch."""

    def __init__(self, index: int, path: Path):
        self.index, self.path = index, path
        # A few batches ahead at most: memory stays bounded on hour-long files.
        self.feeds: queue.Queue = queue.Queue(maxsize=2)
        self.samples = 0
        self.error: BaseException | None = None


def run(
    inputs: Iterable[str | os.PathLike],
    models: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    format: str = "jsonl",
    arrays: bool = True,
    jobs: int = 2,
    batch_size: int | str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    threads: int | None = None,
    resume: bool = True,
    top: int = 5,
    last_patch_mode: str = "discard",
    progress: bool | None = None,
) -> Iterator[FileResult | FileFailure]:
    """Run an embedding model (and any heads on its embeddings) over many files; see the module
    docstring for what goes to `out_dir`. models: paths or names; an audio model and/or heads (the
    heads' embedding model is found from their metadata when no audio model is given).
    batch_size: default `mirfeat.model.default_batch_size` of the audio model's family. precision:
    "fp32" or "int8" (see `load_model`; heads run in fp32 either way).
    Yields a FileResult or FileFailure per file as each is done (files already done are skipped)."""
    files = expand_inputs(inputs)
    output = OutputDir(out_dir, format=format, arrays=arrays, resume=resume)
    options = RunOptions(device=device, batch_size=batch_size, threads=threads, precision=precision)
    model, heads = load_models(models, options)
    parameters = {
        "engine": "local",
        "format": format,
        "arrays": arrays,
        "batch_size": model.batch_size,
        "jobs": jobs,
        "device": device,
        "device_used": model.graph.session.device,
        "precision": precision,
        "top": top,
        "last_patch_mode": last_patch_mode,
        "resume": resume,
    }
    pending = output.start(model, heads, files, parameters)
    bar = progress_bar(len(pending), progress)
    try:
        for item in _process(model, [p for p, _ in pending], jobs, last_patch_mode):
            path, key = pending[item.index]
            if isinstance(item, _Failed):
                failure = output.record_failure(path, failure_reason(path, item.error))
                bar.update()
                yield failure
                continue
            result = _finish(model, heads, path, item, top, key or {"path": str(path)})
            target = output.arrays_path(path)
            if target is not None:
                save_arrays(target, result)
            output.record(result.summary)
            bar.done(result.duration)
            yield result
    finally:
        bar.close()
        output.close()


class OutputDir:
    """A run's OUTDIR (see the module docstring), shared by the local and the Ray engine: the
    journal, errors.jsonl, run.json, where each file's arrays go, and the summary table at the end."""

    def __init__(self, out_dir: str | os.PathLike, *, format: str = "jsonl", arrays: bool = True, resume: bool = True):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        self.path, self.format, self.arrays, self.resume = Path(out_dir), format, arrays, resume
        self._journal: _Journal | None = None
        self._lock_fd: int | None = None

    @property
    def journal(self) -> _Journal:
        if self._journal is None:
            raise RuntimeError("OutputDir.start() first")
        return self._journal

    @property
    def arrays_format(self) -> str:
        return "parquet" if self.format == "parquet" else "npz"

    def start(
        self, model: Model, heads: list[Head], files: list[Path], parameters: dict
    ) -> list[tuple[Path, dict | None]]:
        """Write run.json; the files still to do, each with its key (None when it cannot be read:
        the engine reports why), in input order."""
        (self.path / "arrays").mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._journal = _Journal(self.path, self.resume)
            info = _run_info(model, heads, files, parameters)
            if self.journal.done:
                self._check_same_run(info)
            _write_json(self.path / "run.json", info)
            self.journal.forget_errors({display_name(p) for p in files})  # retried now
        except BaseException:
            self._unlock()
            raise
        pending: list[tuple[Path, dict | None]] = []
        for path in files:
            try:
                key: dict | None = file_key(path)
            except OSError:
                key = None
            if key is None or not self.journal.is_done(key):
                pending.append((path, key))
        return pending

    def _lock(self) -> None:
        """Hold OUTDIR/.lock until `close`: two runs appending to one journal would interleave."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(fd):
            os.close(fd)
            raise MirfeatError(f"{self.path}: another mirfeat run is writing here; wait for it, or use another folder")
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            unlock(self._lock_fd)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_same_run(self, info: dict) -> None:
        """Resuming adds files to results made earlier: refuse other models or settings, whose
        results would sit in one table with the earlier ones as if they were alike."""
        try:
            earlier = json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError):
            return  # no record of the earlier run (journal kept by hand): nothing to compare
        mine, theirs = _what_results_depend_on(info), _what_results_depend_on(earlier)
        changed = [key for key in mine if mine[key] != theirs.get(key)]
        if changed:
            details = "; ".join(f"{key}: {theirs.get(key)} then, {mine[key]} now" for key in changed)
            raise MirfeatError(
                f"{self.path}: holds results of another run ({details}); resume it with the same models "
                "and settings, or start afresh with --no-resume (resume=False), or write to another folder"
            )

    def arrays_path(self, path: Path) -> Path | None:
        """Where a file's per-patch arrays go (None without arrays)."""
        if not self.arrays:
            return None
        return array_file(self.path / "arrays", path, self.arrays_format)

    def record(self, row: dict) -> None:
        """A file done: its summary row (with its key) to the journal."""
        self.journal.append(self.journal.summary_path, row)

    def record_failure(self, path: Path, reason: str) -> FileFailure:
        failure = FileFailure(display_name(path), reason)
        self.journal.append(self.journal.errors_path, {"path": failure.source, "error": failure.error})
        return failure

    def close(self) -> None:
        """The summary table from the whole journal (this run's files and earlier runs')."""
        try:
            if self._journal is not None and self.format in ("csv", "parquet"):
                _write_table(self.path, self.journal.rows(), self.format)
        finally:
            self._unlock()


class _Progress:
    """A tqdm bar of files with audio-seconds per second; quiet when not wanted."""

    def __init__(self, total: int, show: bool):
        self.bar = tqdm(total=total, unit="file", disable=not show, file=sys.stderr, dynamic_ncols=True)
        self.started, self.audio_seconds = time.perf_counter(), 0.0

    def update(self) -> None:
        self.bar.update()

    def done(self, seconds: float) -> None:
        self.audio_seconds += seconds
        self.bar.update()
        rate = self.audio_seconds / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:.0f} audio-s/s")

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, progress: bool | None) -> _Progress:
    """A progress bar on stderr (default: when stderr is a terminal)."""
    return _Progress(total, sys.stderr.isatty() if progress is None else progress)


def load_models(models: Sequence[str | os.PathLike], options: RunOptions) -> tuple[Model, list[Head]]:
    """A run's models: the one audio model and its heads (the heads' embedding model when no audio
    model is named); an error when there are several audio models or a head does not fit it."""
    if not models:
        raise MirfeatError("name at least one model")
    loaded = [load_model(m, options=options) for m in models]
    audio = [m for m in loaded if isinstance(m, Model)]
    heads = [m for m in loaded if isinstance(m, Head)]
    if len(audio) > 1:
        raise MirfeatError(f"one audio model a run, not {len(audio)}: {', '.join(m.name for m in audio)}")
    model = audio[0] if audio else heads[0].embedding_model
    if heads:
        from mirfeat.pipeline import Pipeline

        Pipeline(heads, embedding_model=model)  # checks that every head reads this model's embeddings
    return model, heads


class _Stopped(Exception):
    """The consumer of `_process` stopped early: a worker leaves its file."""


class _Done:
    def __init__(self, index: int, samples: int, outputs: dict[str, np.ndarray]):
        self.index, self.samples, self.outputs = index, samples, outputs


class _Failed:
    def __init__(self, index: int, error: BaseException):
        self.index, self.error = index, error


def _process(model: Model, paths: list[Path], jobs: int, last_patch_mode: str) -> Iterator[_Done | _Failed]:
    """Workers prepare files in order (decode, bands, patch inputs); this loop runs batches that
    take rows from as many files as fill them, and yields each file, in order, once all its rows
    have run."""
    works = [_Work(i, p) for i, p in enumerate(paths)]
    assign = iter(works)
    lock = threading.Lock()
    stop = threading.Event()  # set when the consumer stops early: the workers then return
    graph_names = [model.graph.graph_name(n) for n in model.output_names]

    def put(work: _Work, item: dict[str, np.ndarray] | None) -> None:
        while not stop.is_set():
            try:
                work.feeds.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def prepare(work: _Work) -> None:
        def counted() -> Iterator[np.ndarray]:
            for block in model.audio_blocks(work.path):
                work.samples += len(block)
                yield block

        bands = model.family.stream_bands(counted())
        for batch in patch_batches(bands, model.patch_size, model.patch_hop_size, last_patch_mode, model.batch_size):
            put(work, model.patch_feeds(batch))
        if work.samples == 0:
            raise MirfeatError(f"{display_name(work.path)}: no audio samples (empty input)")

    def worker() -> None:
        try:
            while True:
                with lock:
                    work = next(assign, None)
                if work is None:
                    return
                try:
                    prepare(work)
                except _Stopped:
                    raise
                except Exception as exc:  # this file's failure, reported in its place
                    work.error = exc
                put(work, None)
        except _Stopped:
            return

    def run_waiting() -> None:
        """Run the waiting rows as one batch; if that fails, every file with rows in it fails."""
        try:
            run_rows(model, waiting, graph_names, outputs)
        except Exception as exc:
            for work, _ in waiting:
                if work.error is None:
                    work.error = exc

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(jobs, 1))]
    for thread in threads:
        thread.start()
    waiting: list[tuple[_Work, dict[str, np.ndarray]]] = []  # rows not run yet
    outputs: dict[int, dict[str, list[np.ndarray]]] = {}
    finished: list[_Work] = []  # all rows received, in order; yielded once none is waiting
    try:
        for work in works:
            while (feeds := work.feeds.get()) is not None:
                if work.error is not None:
                    continue  # a file failed in a batch: its other rows are not run
                waiting.append((work, feeds))
                if sum(_rows(f) for _, f in waiting) >= model.batch_size:
                    run_waiting()
                    waiting = []
            if work.error is not None:
                waiting = [(w, f) for w, f in waiting if w is not work]
            finished.append(work)
            if work is works[-1] and waiting:
                run_waiting()
                waiting = []
            while finished and not any(w is finished[0] for w, _ in waiting):
                done = finished.pop(0)
                parts = outputs.pop(done.index, {})
                if done.error is not None:
                    yield _Failed(done.index, done.error)
                else:
                    yield _Done(done.index, done.samples, _joined(model, parts, graph_names))
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


def run_rows(model: Model, rows, graph_names: list[str], outputs: dict[int, dict[str, list[np.ndarray]]]) -> None:
    """Run `patch_feeds` rows of several files as one batch. rows: [(item with an `.index`, feeds)];
    each file's outputs are appended, in order, to outputs[index][graph name]."""
    keys = rows[0][1].keys()
    feeds = {k: np.concatenate([f[k] for _, f in rows]) for k in keys}
    raw = model.run_feeds(feeds, graph_names)
    start = 0
    for work, f in rows:
        n = _rows(f)
        per_file = outputs.setdefault(work.index, {g: [] for g in graph_names})
        for g in graph_names:
            per_file[g].append(raw[g][start : start + n])
        start += n


def _joined(model: Model, parts: dict[str, list[np.ndarray]], graph_names: list[str]) -> dict[str, np.ndarray]:
    return {g: model.graph.session.concat(parts.get(g, []), g) for g in graph_names}


def finish_file(
    model: Model, heads: list[Head], path: Path, samples: int, outputs: dict[str, np.ndarray], top: int, key: dict
) -> FileResult:
    """A file's FileResult from its audio model outputs ({graph output name: [patches, ...]}) and
    its length in samples: the heads run on its embeddings, and the summary row, starting with the
    file's `key` (path, size, mtime_ns)."""
    return _finish(model, heads, path, _Done(0, samples, outputs), top, key)


def _finish(model: Model, heads: list[Head], path: Path, done: _Done, top: int, key: dict | None = None) -> FileResult:
    """Name a file's outputs, run the heads on its embeddings, and make its summary row (starting
    with `key`, the file's identity columns, where given)."""
    rows = {}
    for name in model.output_names:
        raw = done.outputs[model.graph.graph_name(name)]
        rows[name] = raw if model.family.tensor_output else essentia_rows(raw)
    n_patches = len(next(iter(done.outputs.values()))) if done.outputs else 0
    patch_times = model.patch_times(n_patches)
    duration = done.samples / model.sample_rate
    results = [
        Result(rows, model.labels, patch_times, model.predictions_name, model.embeddings_name, str(path), duration)
    ]
    if heads:
        embeddings = results[0].embeddings
        if embeddings is None:
            raise MirfeatError(f"{model.path}: its metadata names no embeddings output for the heads")
        results += [head.result(embeddings, patch_times, str(path), duration) for head in heads]
    names = [model.name] + [head.name for head in heads]
    outputs = {
        f"{name}/{key}": value for name, r in zip(names, results, strict=True) for key, value in r.outputs.items()
    }
    summary: dict = {**(key or {}), "duration": round(duration, 3), "patches": n_patches, "models": {}}
    summarised = [model.family.class_summary] + [True] * len(heads)
    for name, result, wanted in zip(names, results, summarised, strict=True):
        if not wanted or result.activations is None or result.activations.ndim != 2:
            continue
        means = result.mean()
        summary["models"][name] = {
            "top": [[label, _rounded(score)] for label, score in result.top_k(top)],
            "mean": {label: _rounded(m) for label, m in zip(result.labels, means, strict=False)},
        }
    return FileResult(str(path), duration, patch_times, outputs, summary)


def _rounded(value: float) -> float | None:
    """A summary number: 6 decimals, None (JSON null) where not finite (a file shorter than a patch
    has no mean; strict JSON readers refuse NaN)."""
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def array_file(folder: Path, path: Path, arrays_format: str) -> Path:
    """Where in `folder` a file's arrays go: its stem and a short hash of its resolved path (stems
    repeat), with the format's suffix (npz or parquet)."""
    return folder / f"{_array_name(path)}.{arrays_format}"


def _array_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:80]
    return f"{stem}-{digest}"


def save_arrays(target: Path, result: FileResult) -> None:
    """Per-patch outputs and patch times as .npz (`patch_times` and one array per output) or, for a
    .parquet target, as Parquet (a row per patch: `patch_time`, then per output a fixed-size list
    of its flattened per-patch values, the per-patch shape in the field's `shape` metadata);
    written to a temporary name and renamed."""
    partial = target.with_name(f"{target.stem}.part{target.suffix}")
    if target.suffix == ".parquet":
        _write_arrays_parquet(partial, result)
    else:
        np.savez(partial, patch_times=result.patch_times, **result.outputs)
    os.replace(partial, target)


def _write_arrays_parquet(target: Path, result: FileResult) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MirfeatError("--format parquet needs pyarrow: pip install 'mirfeat[parquet]'") from None
    n = len(result.patch_times)
    fields, columns = [pa.field("patch_time", pa.float64())], [pa.array(np.asarray(result.patch_times, np.float64))]
    for name, value in result.outputs.items():
        width = int(np.prod(value.shape[1:]))
        values = pa.array(np.ascontiguousarray(value).reshape(n * width))
        fields.append(pa.field(name, pa.list_(values.type, width), metadata={"shape": json.dumps(value.shape[1:])}))
        columns.append(pa.FixedSizeListArray.from_arrays(values, width))
    pq.write_table(pa.Table.from_arrays(columns, schema=pa.schema(fields)), target)


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A file's per-patch arrays as `save_arrays` wrote them (.npz or .parquet):
    {"patch_times": [patches], "MODEL/OUTPUT": [patches, ...]}."""
    path = Path(path)
    if path.suffix != ".parquet":
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    arrays = {"patch_times": table.column("patch_time").to_numpy()}
    for column in table.schema:
        if column.name == "patch_time":
            continue
        shape = tuple(json.loads(column.metadata[b"shape"]))
        flat = table.column(column.name).combine_chunks().flatten().to_numpy()
        arrays[column.name] = flat.reshape((table.num_rows, *shape))
    return arrays


def _write_json(target: Path, data: dict) -> None:
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, target)


def _run_info(model: Model, heads: list[Head], files: list[Path], parameters: dict) -> dict:
    from mirfeat import __version__

    return {
        "mirfeat": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": [
            {
                "name": m.name,
                "path": str(m.path),
                "sha256": _sha256(m.path),
                "algorithm": m.family.algorithm,
                # The file the session ran, where it is not `path` (the int8 copy).
                **({"graph": str(g), "graph_sha256": _sha256(g)} if (g := m.graph.session.path) != m.path else {}),
            }
            for m in [model, *heads]
        ],
        "inputs": len(files),
        "parameters": parameters,
    }


def _what_results_depend_on(info: dict) -> dict:
    """From a run.json: the models (their files' sha256) and the settings that change what is
    written; not the engine, device, batch size or jobs, which change only the speed (and the
    float32 rounding)."""
    parameters = info.get("parameters") or {}
    arrays = parameters.get("arrays")
    return {
        # The model files (the int8 graph follows from them and `precision`), short hashes to read.
        "models": [f"{m.get('name')} ({str(m.get('sha256'))[:12]})" for m in info.get("models") or []],
        "precision": parameters.get("precision", "fp32"),
        "top": parameters.get("top"),
        "last_patch_mode": parameters.get("last_patch_mode"),
        "arrays": ("parquet" if parameters.get("format") == "parquet" else "npz") if arrays else None,
    }


def flat_row(row: dict) -> dict:
    """A summary row as flat columns: path, size, mtime_ns, duration, patches, then per model
    `MODEL:top` (a list of labels, best first: labels hold spaces; a JSON list in CSV) and
    `MODEL:LABEL` (clip-level mean)."""
    flat = {k: v for k, v in row.items() if k != "models"}
    for name, model in row.get("models", {}).items():
        flat[f"{name}:top"] = [label for label, _ in model["top"]]
        flat.update({f"{name}:{label}": value for label, value in model["mean"].items()})
    return flat


def _write_table(out: Path, rows: list[dict], format: str) -> None:
    """The journal as summary.csv or summary.parquet (written, then renamed)."""
    flat = [flat_row(row) for row in rows]
    columns = list(dict.fromkeys(key for row in flat for key in row))
    flat = [{c: row.get(c) for c in columns} for row in flat]  # every row with every column
    target = out / f"summary.{format}"
    partial = target.with_name(f"summary.part.{format}")
    if format == "csv":
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in flat)
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MirfeatError("--format parquet needs pyarrow: pip install 'mirfeat[parquet]'") from None
        pq.write_table(pa.Table.from_pylist(flat), partial)
    os.replace(partial, target)
