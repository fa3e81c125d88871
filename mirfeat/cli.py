"""`mirfeat tag FILE...`, `mirfeat tempo FILE... -m MODEL`, `mirfeat pitch FILE -m MODEL`,
`mirfeat run INPUT... -m MODEL -o OUTDIR`, `mirfeat models ...`, `mirfeat plot FILE` and
`mirfeat convert MODEL.pb`.

Exit status: 0 when every file was tagged, 1 when any file failed (the others are still tagged and
printed), 2 when nothing could start (bad model, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from conversion.__main__ import add_convert_arguments  # argparse only; TensorFlow loads on use
from mirfeat import __version__
from mirfeat.errors import AudioError, MirfeatError, display_name, failure_reason, printable
from mirfeat.families import CREPE_FAMILY, TEMPOCNN_FAMILY
from mirfeat.model import DEFAULT_MODEL, Model, load_model
from mirfeat.patches import PATCH_MODES
from mirfeat.pipeline import FileFailure
from mirfeat.runtime import AUTO_BATCH, DEFAULT_BATCH, DEVICES, PRECISIONS
from mirfeat.tempo import AGGREGATIONS, NoTempoError, TempoEstimate

NOT_TAGGERS = {CREPE_FAMILY: "pitch", TEMPOCNN_FAMILY: "tempo"}  # families with their own subcommand


def tag(args: argparse.Namespace, out: TextIO) -> int:
    try:
        model = load_model(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if isinstance(model, Model) and model.family in NOT_TAGGERS:
        # Their classes are pitch bins or tempo classes: a mean over patches is no tag.
        command = NOT_TAGGERS[model.family]
        print(f"error: {args.model}: a {model.family.algorithm} model; use `mirfeat {command}`", file=sys.stderr)
        return 2
    failures = 0
    progress = tqdm(args.files, unit="file", disable=not args.progress, file=sys.stderr, leave=False)
    for path in progress:
        name = display_name(path)
        progress.set_postfix_str(Path(name).name[:40], refresh=False)
        try:
            result = model(path, last_patch_mode=args.last_patch_mode)
        except Exception as exc:  # one bad file must not stop the others, whatever it raises
            failures += 1
            reason = failure_reason(path, exc)
            tqdm.write(f"error: {reason}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": reason}), file=out, flush=True)
            continue
        top = result.top_k(args.top)
        if args.json:
            record: dict[str, Any] = {
                "file": name,
                "duration": round(result.duration, 3),
                "patches": int(len(result.patch_times)),
                "tags": [{"label": label, "score": round(score, 6)} for label, score in top],
            }
            print(json.dumps(record), file=out, flush=True)
        elif not top:
            print(f"{name}: shorter than one patch ({result.duration:.2f} s); try --last-patch-mode repeat", file=out)
        else:
            print(f"{name}:", file=out)
            for label, score in top:
                print(f"  {score:.3f}  {label}", file=out)
            out.flush()
    return 1 if failures else 0


TEMPO_MODEL_HINT = (
    "give a TempoCNN model with -m: a converted .onnx (python -m conversion freeze-tempocnn deeptemp_k4 --onnx "
    "freezes one from the tempocnn package) or the name of Essentia's deeptemp-k16-3, deeptemp-k4-3 or "
    "deepsquare-k16-3 (downloaded and converted on first use; CC BY-NC-SA)"
)


def _tempo_record(name: str, duration: float, tempo: TempoEstimate, local: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "file": name,
        "duration": round(duration, 3),
        "bpm": tempo.bpm,
        "aggregation": tempo.aggregation,
    }
    if local:
        record["local"] = [{"time": round(t, 3), "bpm": bpm, "probability": round(p, 6)} for t, bpm, p in tempo.local()]
    return record


def tempo(args: argparse.Namespace, out: TextIO) -> int:
    """`mirfeat tempo FILE... -m MODEL`: each file's global BPM (and with --local, one tempo per patch)."""
    if not args.model:
        print(f"error: no model: {TEMPO_MODEL_HINT}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if not isinstance(model, Model) or model.family is not TEMPOCNN_FAMILY:
        print(
            f"error: {args.model}: a {model.family.algorithm} model, not TempoCNN; {TEMPO_MODEL_HINT}", file=sys.stderr
        )
        return 2
    failures = 0
    for path in args.files:
        name = display_name(path)
        try:
            result = model(path, last_patch_mode=args.last_patch_mode)
            estimate = result.tempo(args.aggregation)
        except NoTempoError:
            failures += 1
            reason = f"{name}: shorter than one patch ({result.duration:.2f} s), no tempo; try --last-patch-mode repeat"
            print(f"error: {reason}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": reason}), file=out, flush=True)
            continue
        except Exception as exc:  # one bad file must not stop the others, whatever it raises
            failures += 1
            reason = failure_reason(path, exc)
            print(f"error: {reason}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": reason}), file=out, flush=True)
            continue
        if args.json:
            print(json.dumps(_tempo_record(name, result.duration, estimate, args.local)), file=out, flush=True)
            continue
        print(f"{name}: {estimate.bpm:g} BPM", file=out)
        if args.local:
            for start, bpm, probability in estimate.local():
                print(f"  {start:8.2f} s  {bpm:5g} BPM  (p {probability:.3f})", file=out)
        out.flush()
    return 1 if failures else 0


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    """`mirfeat run`: the local engine (mirfeat.runner) or, with --engine ray, the same job and
    OUTDIR on Ray (mirfeat.ray_engine; --jobs model actors)."""
    outdir_args = {"format": args.format, "arrays": args.arrays, "resume": args.resume, "progress": args.progress}
    model_args = {  # how the models run: the same for both engines
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "top": args.top,
        "last_patch_mode": args.last_patch_mode,
    }
    results: Iterator[object]
    try:
        if args.engine == "ray":
            try:
                import ray  # noqa: F401  (imported on use by ray_engine; checked here for a clear message)

                from mirfeat import ray_engine
            except ImportError as exc:
                print(f"error: --engine ray needs the ray extra (pip install 'mirfeat[ray]'): {exc}", file=sys.stderr)
                return 2
            settings = ray_engine.RaySettings(concurrency=args.jobs, **model_args)
            results = ray_engine.run(
                args.inputs, args.models, args.output, settings, address=args.address, **outdir_args
            )
        else:
            from mirfeat.runner import run

            results = run(args.inputs, args.models, args.output, jobs=args.jobs, **outdir_args, **model_args)
        done = failed = 0
        for item in results:
            if isinstance(item, FileFailure):
                failed += 1
                tqdm.write(f"error: {printable(item.error)}", file=sys.stderr)
            else:
                done += 1
    except (MirfeatError, OSError, ValueError, RuntimeError, ConnectionError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    print(f"{done} files done, {failed} failed; results in {display_name(args.output)}", file=out)
    return 1 if failed else 0


def plot(args: argparse.Namespace, out: TextIO) -> int:
    from mirfeat.plot import plot_result

    try:
        model = load_model(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
        result = model(args.file, last_patch_mode=args.last_patch_mode)
        output = args.output or args.file.with_suffix(".png").name
        size = (args.width, args.height)
        plot_result(result, output, top=args.top, size=size, dpi=args.dpi)
        if result.algorithm == CREPE_FAMILY.algorithm:
            summary = f"{len(result.patch_times)} frames, pitch contour"
        elif result.algorithm == TEMPOCNN_FAMILY.algorithm:
            summary = f"{len(result.patch_times)} patches, tempo probabilities"
        else:
            summary = f"{len(result.patch_times)} patches, {len(result.mean())} classes"
    except (AudioError, OSError, ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({summary})", file=out)
    return 0


CREPE_MODELS = ", ".join(f"crepe-{size}-1" for size in ("tiny", "small", "medium", "large", "full"))


def pitch(args: argparse.Namespace, out: TextIO) -> int:
    """Time, frequency and confidence per frame of one file, as CSV (or JSON) on stdout or to -o."""
    if not args.model:
        print(
            f"error: mirfeat pitch needs a CREPE model: -m NAME ({CREPE_MODELS}: downloaded from Essentia's "
            "site and converted, needs the convert extra) or -m PATH.onnx",
            file=sys.stderr,
        )
        return 2
    try:
        options = {"device": args.device, "batch_size": args.batch_size, "precision": args.precision}
        model = load_model(args.model, hop_ms=args.hop_size, **options) if _is_crepe(args.model) else None
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if model is None:
        print(f"error: {args.model}: not a CREPE model (its metadata names another algorithm)", file=sys.stderr)
        return 2
    try:
        track = model(args.file).pitch()
    except Exception as exc:  # a bad file: say which and why
        print(f"error: {failure_reason(args.file, exc)}", file=sys.stderr)
        return 1
    name = display_name(args.file)
    if args.json:
        text = json.dumps(
            {
                "file": name,
                "model": model.name,
                "hop_ms": args.hop_size,
                "frames": len(track),
                "time": [round(float(t), 6) for t in track.times],
                "frequency": [round(float(f), 4) for f in track.frequency],
                "confidence": [round(float(c), 6) for c in track.confidence],
            }
        )
    else:
        rows = (
            f"{t:.5f},{f:.4f},{c:.6f}" for t, f, c in zip(track.times, track.frequency, track.confidence, strict=True)
        )
        text = "\n".join(["time,frequency,confidence", *rows])
    if args.output:
        args.output.write_text(text + "\n")
        print(f"wrote {display_name(args.output)} ({len(track)} frames of {name})", file=out)
    else:
        print(text, file=out)
    return 0


def _is_crepe(name_or_path: str) -> bool:
    """Whether a model's metadata names CREPE's algorithm (read before loading: another family's
    model would refuse hop_ms with a less helpful error)."""
    from mirfeat.model import read_metadata_beside, resolve_model_path

    return read_metadata_beside(resolve_model_path(name_or_path)).algorithm == CREPE_FAMILY.algorithm


def convert(args: argparse.Namespace, out: TextIO) -> int:
    from conversion.__main__ import run_convert

    try:
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        print(
            f"error: converting needs the convert extra (pip install 'mirfeat[convert]'): {exc}",
            file=sys.stderr,
        )
        return 2
    return run_convert(args)


def models(args: argparse.Namespace, out: TextIO) -> int:
    """`mirfeat models list | get NAME... | path NAME | verify [NAME...]` (see `mirfeat.cache`)."""
    from mirfeat.cache import ModelCache
    from mirfeat.model import BUNDLED_DIR
    from mirfeat.registry import MODELS, lookup

    try:
        store = ModelCache(mirror=getattr(args, "mirror", None))
        if args.action == "list":
            installed = set(store.installed())
            rows = [e for e in MODELS.values() if e.name in installed or not args.installed]
            print(
                f"# cache: {store.models_dir}  (files: onnx published, pb converted after download, onnx|pb unknown)",
                file=out,
            )
            print(f"{'name':46} {'files':8} {'embedding model':40} cached", file=out)
            for e in rows:
                name = e.name if e.runnable else f"{e.name}*"
                cached = "yes" if e.name in installed else ""
                print(f"{name:46} {e.format:8} {e.embedding or '-':40} {cached}".rstrip(), file=out)
            if any(not e.runnable for e in rows):
                print("* downloads, but mirfeat has no family for its algorithm yet", file=out)
            return 0
        if args.action == "get":
            for name in args.names:
                print(store.fetch(name, force=args.force), file=out)
            return 0
        if args.action == "path":
            bundled = BUNDLED_DIR / f"{args.name}.onnx"
            path = bundled if bundled.is_file() else store.cached(lookup(args.name).name)
            if path is None:
                print(f"error: {args.name}: not downloaded yet (mirfeat models get {args.name})", file=sys.stderr)
                return 1
            print(path, file=out)
            return 0
        names = args.names or store.installed()
        if not names:
            print(f"no models in {store.models_dir}", file=out)
        failed = 0
        for name in names:
            problems = store.verify(name)
            failed += bool(problems)
            print(f"ok      {name}" if not problems else "\n".join(f"FAILED  {p}" for p in problems), file=out)
        return 1 if failed else 0
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def batch_size(text: str) -> int | str:
    """--batch-size: a number of patches, or "auto" (measured at load: `RunOptions`)."""
    return AUTO_BATCH if text == AUTO_BATCH else int(text)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--device, --batch-size and --precision: how the graphs run (`RunOptions`)."""
    parser.add_argument(
        "--device", default="cpu", choices=DEVICES, help="cuda: onnxruntime-gpu; auto: cuda where it is (default cpu)"
    )
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=None,
        help=f"patches per run (default {DEFAULT_BATCH}, or the model family's batch where smaller: MAEST 1), "
        "or auto: doubled at load until throughput stops rising",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default; the one held to Essentia's numbers) or the variant the conversion step wrote "
        "beside the model: int8 (NAME.int8.onnx, `python -m conversion quantize`) or fp16 (NAME.fp16.onnx, for cuda)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirfeat", description="Essentia's music models on onnxruntime")
    parser.add_argument("--version", action="version", version=f"mirfeat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    tagger = commands.add_parser("tag", help="print each file's top tags (mean over patches)")
    tagger.add_argument("files", nargs="+", type=Path)
    tagger.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})"
    )
    tagger.add_argument("--top", type=positive_int, default=5, help="how many tags (default 5)")
    tagger.add_argument("--json", action="store_true", help="print one JSON object per file, as each is done")
    add_run_options(tagger)
    tagger.add_argument("--last-patch-mode", default="discard", choices=PATCH_MODES)
    tagger.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    tagger.set_defaults(run=tag)

    tempo_parser = commands.add_parser("tempo", help="print each file's tempo in BPM with a TempoCNN model")
    tempo_parser.add_argument("files", nargs="+", type=Path)
    tempo_parser.add_argument("-m", "--model", help="TempoCNN .onnx path or Essentia model name (required)")
    tempo_parser.add_argument(
        "--aggregation",
        default="majority",
        choices=AGGREGATIONS,
        help="global tempo from the local ones: majority (default, as Essentia), mean or median",
    )
    tempo_parser.add_argument("--local", action="store_true", help="also print the tempo of each patch (every 5.9 s)")
    tempo_parser.add_argument("--json", action="store_true", help="print one JSON object per file, as each is done")
    add_run_options(tempo_parser)
    tempo_parser.add_argument(
        "--last-patch-mode",
        default="discard",
        choices=PATCH_MODES,
        help="repeat: files shorter than a patch (11.9 s) get one patch of their frames repeated",
    )
    tempo_parser.set_defaults(run=tempo)

    plotter = commands.add_parser("plot", help="draw a file's activations over time with the labels (PNG)")
    plotter.add_argument("file", type=Path)
    plotter.add_argument("-o", "--output", type=Path, help="PNG to write (default: FILE's name with .png)")
    plotter.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})"
    )
    plotter.add_argument("--top", type=positive_int, help="only the N classes with the highest mean")
    plotter.add_argument("--width", type=float, default=12.0, help="inches (default 12)")
    plotter.add_argument("--height", type=float, default=8.0, help="inches (default 8)")
    plotter.add_argument("--dpi", type=int, default=100)
    plotter.add_argument("--last-patch-mode", default="discard", choices=PATCH_MODES)
    add_run_options(plotter)
    plotter.set_defaults(run=plot)

    pitcher = commands.add_parser(
        "pitch", help="a file's pitch per frame with a CREPE model: time (s), frequency (Hz), confidence"
    )
    pitcher.add_argument("file", type=Path)
    pitcher.add_argument("-m", "--model", help=f"CREPE model: registry name ({CREPE_MODELS}) or .onnx path")
    pitcher.add_argument("-o", "--output", type=Path, help="write the CSV (or JSON) here instead of stdout")
    pitcher.add_argument("--json", action="store_true", help="one JSON object with time, frequency, confidence")
    pitcher.add_argument(
        "--hop-size", type=float, default=10.0, help="milliseconds between frames (default 10, as Essentia's)"
    )
    add_run_options(pitcher)
    pitcher.set_defaults(run=pitch)

    runner = commands.add_parser(
        "run", help="a library through a model and its heads: summary table, per-patch arrays, resumable"
    )
    runner.add_argument("inputs", nargs="+", help="files, directories, glob patterns, @manifest.txt or @manifest.csv")
    runner.add_argument(
        "-m", "--model", dest="models", action="append", required=True, help="model or head (repeat for more heads)"
    )
    runner.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    runner.add_argument(
        "--format",
        default="jsonl",
        choices=("jsonl", "csv", "npz", "parquet"),
        help="summary table besides summary.jsonl (csv, parquet); parquet also puts the arrays in Parquet, not .npz",
    )
    runner.add_argument(
        "--arrays",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-patch arrays (.npz; Parquet with --format parquet)",
    )
    runner.add_argument(
        "--jobs",
        type=positive_int,
        default=2,
        help="decode/frontend worker threads; with --engine ray, model actors (default 2)",
    )
    add_run_options(runner)
    runner.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="skip files done")
    runner.add_argument("--top", type=positive_int, default=5, help="labels per model in the summary (default 5)")
    runner.add_argument("--last-patch-mode", default="discard", choices=PATCH_MODES)
    runner.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)"
    )
    runner.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: threads in this process; ray: on a Ray cluster, the same OUTDIR (ray extra)",
    )
    runner.add_argument(
        "--address",
        help="with --engine ray: 'auto' (this node's cluster), 'ray://HEAD:10001' (Ray Client); "
        "default: $RAY_ADDRESS, else a Ray started on this machine",
    )
    runner.set_defaults(run=run_command)

    converter = commands.add_parser("convert", help="Essentia .pb -> .onnx (needs the convert extra)")
    add_convert_arguments(converter)
    converter.set_defaults(run=convert)

    models_parser = commands.add_parser(
        "models", help="Essentia's published models by name: list, download (get), locate (path), verify"
    )
    actions = models_parser.add_subparsers(dest="action", required=True)
    lister = actions.add_parser("list", help="the registry: name, files, embedding model, cached")
    lister.add_argument("--installed", action="store_true", help="only the models in the cache")
    getter = actions.add_parser("get", help="download (and convert, verify) models and their embedding models")
    getter.add_argument("names", nargs="+")
    getter.add_argument("--force", action="store_true", help="delete the cached files and download again")
    getter.add_argument("--mirror", help="base URL laid out like https://essentia.upf.edu/models/ ($MIRFEAT_MIRROR)")
    pather = actions.add_parser("path", help="print the .onnx that load_model(NAME) reads, if it is here")
    pather.add_argument("name")
    verifier = actions.add_parser("verify", help="check cached files against their recorded / pinned sha256")
    verifier.add_argument("names", nargs="*", help="default: every cached model")
    models_parser.set_defaults(run=models)
    return parser


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """mirfeat's log lines (downloads, conversions, batch-size choices) on stderr for one command."""
    logger = logging.getLogger("mirfeat")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mirfeat: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        with _log_to_stderr():
            return args.run(args, out)
    except BrokenPipeError:
        # The reader went away (`mirfeat tag ... | head -1`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # e.g. a full disk under a redirected stdout
        print(f"error: cannot write the output: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
