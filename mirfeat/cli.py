"""`mirfeat tag FILE...`, `mirfeat run INPUT... -m MODEL -o OUTDIR`, `mirfeat models ...`,
`mirfeat plot FILE` and `mirfeat convert MODEL.pb`.

Exit status: 0 when every file was tagged, 1 when any file failed (the others are still tagged and
printed), 2 when nothing could start (bad model, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from conversion.__main__ import add_convert_arguments  # argparse only; TensorFlow loads on use
from mirfeat import __version__
from mirfeat.errors import AudioError, MirfeatError, display_name, failure_reason, printable
from mirfeat.model import DEFAULT_MODEL, load_model
from mirfeat.runtime import DEFAULT_BATCH, PRECISIONS

BATCH_HELP = f"patches per run (default {DEFAULT_BATCH}, or the model family's batch where smaller: MAEST 1)"
PRECISION_HELP = "fp32 (default) or int8: the quantized copy `python -m conversion quantize MODEL.onnx` writes"


def tag(args: argparse.Namespace, out: TextIO) -> int:
    try:
        model = load_model(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
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


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    from mirfeat.runner import FileResult, run

    if args.engine == "ray":
        return ray_run_command(args, out)
    try:
        results = run(
            args.inputs,
            args.models,
            args.output,
            format=args.format,
            arrays=args.arrays,
            jobs=args.jobs,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            resume=args.resume,
            top=args.top,
            last_patch_mode=args.last_patch_mode,
            progress=args.progress,
        )
        done = failed = 0
        for item in results:
            if isinstance(item, FileResult):
                done += 1
            else:
                failed += 1
                tqdm.write(f"error: {item.error}", file=sys.stderr)
    except (MirfeatError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    print(f"{done} files done, {failed} failed; results in {display_name(args.output)}", file=out)
    return 1 if failed else 0


def ray_run_command(args: argparse.Namespace, out: TextIO) -> int:
    """`mirfeat run --engine ray`: rows to OUTDIR/ray-parquet/ (see mirfeat.ray_engine); --jobs model actors."""
    try:
        from mirfeat import ray_engine

        failures = ray_engine.run(
            args.inputs,
            args.models,
            args.output,
            address=args.address,
            batch_size=DEFAULT_BATCH if args.batch_size is None else args.batch_size,
            device=args.device,
            precision=args.precision,
            concurrency=args.jobs,
            top=args.top,
            last_patch_mode=args.last_patch_mode,
        )
    except ImportError as exc:
        print(f"error: --engine ray needs the ray extra (pip install 'mirfeat[ray]'): {exc}", file=sys.stderr)
        return 2
    except (MirfeatError, OSError, ValueError, RuntimeError, ConnectionError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    for failure in failures:
        print(f"error: {printable(failure['error'])}", file=sys.stderr)
    print(f"{len(failures)} failed; results in {display_name(args.output / 'ray-parquet')}", file=out)
    return 1 if failures else 0


def plot(args: argparse.Namespace, out: TextIO) -> int:
    from mirfeat.plot import plot_result

    try:
        model = load_model(args.model)
        result = model(args.file, last_patch_mode=args.last_patch_mode)
        output = args.output or args.file.with_suffix(".png").name
        plot_result(result, output, top=args.top, size=(args.width, args.height), dpi=args.dpi)
    except (AudioError, OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({len(result.patch_times)} patches, {len(result.mean())} classes)", file=out)
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirfeat", description="Essentia's music models on onnxruntime")
    parser.add_argument("--version", action="version", version=f"mirfeat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    tagger = commands.add_parser("tag", help="print each file's top tags (mean over patches)")
    tagger.add_argument("files", nargs="+", type=Path)
    tagger.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})")
    tagger.add_argument("--top", type=positive_int, default=5, help="how many tags (default 5)")
    tagger.add_argument("--json", action="store_true", help="print one JSON object per file, as each is done")
    tagger.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    tagger.add_argument("--batch-size", type=int, help=BATCH_HELP)
    tagger.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    tagger.add_argument("--last-patch-mode", default="discard", choices=("discard", "repeat"))
    tagger.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    tagger.set_defaults(run=tag)

    plotter = commands.add_parser("plot", help="draw a file's activations over time with the labels (PNG)")
    plotter.add_argument("file", type=Path)
    plotter.add_argument("-o", "--output", type=Path, help="PNG to write (default: FILE's name with .png)")
    plotter.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})")
    plotter.add_argument("--top", type=positive_int, help="only the N classes with the highest mean")
    plotter.add_argument("--width", type=float, default=12.0, help="inches (default 12)")
    plotter.add_argument("--height", type=float, default=8.0, help="inches (default 8)")
    plotter.add_argument("--dpi", type=int, default=100)
    plotter.add_argument("--last-patch-mode", default="discard", choices=("discard", "repeat"))
    plotter.set_defaults(run=plot)

    runner = commands.add_parser(
        "run", help="a library through a model and its heads: summary table, per-patch arrays, resumable"
    )
    runner.add_argument("inputs", nargs="+", help="files, directories, glob patterns, @manifest.txt or @manifest.csv")
    runner.add_argument(
        "-m", "--model", dest="models", action="append", required=True, help="model or head (repeat for more heads)"
    )
    runner.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    runner.add_argument("--format", default="jsonl", choices=("jsonl", "csv", "parquet"), help="summary table")
    runner.add_argument("--arrays", action=argparse.BooleanOptionalAction, default=True, help="per-patch .npz files")
    runner.add_argument("--jobs", type=positive_int, default=2, help="decode/frontend worker threads (default 2)")
    runner.add_argument("--batch-size", type=int, help=BATCH_HELP)
    runner.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    runner.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    runner.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="skip files done")
    runner.add_argument("--top", type=positive_int, default=5, help="labels per model in the summary (default 5)")
    runner.add_argument("--last-patch-mode", default="discard", choices=("discard", "repeat"))
    runner.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)"
    )
    runner.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: threads in this process; ray: a Ray cluster, rows to OUTDIR/ray-parquet/ (ray extra)",
    )
    runner.add_argument(
        "--address", help="with --engine ray: 'auto', 'ray://HOST:10001' (default: $RAY_ADDRESS, else a local Ray)"
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


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
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
