"""`mirfeat tag FILE...` and `mirfeat convert MODEL.pb`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from conversion.__main__ import add_convert_arguments  # argparse only; TensorFlow loads on use
from mirfeat.audio import AudioError
from mirfeat.model import DEFAULT_MODEL, load_model


def tag(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.model, device=args.device, batch_size=args.batch_size)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    results: list[dict[str, Any]] = []
    for index, path in enumerate(args.files, 1):
        started = time.perf_counter()
        try:
            result = model(path, last_patch_mode=args.last_patch_mode)
        except (AudioError, OSError) as exc:  # one bad file must not stop the others
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            results.append({"file": str(path), "error": str(exc)})
            continue
        top = result.top_k(args.top)
        elapsed = time.perf_counter() - started
        if len(args.files) > 1:
            print(f"[{index}/{len(args.files)}] {path} ({elapsed:.2f} s)", file=sys.stderr)
        results.append(
            {
                "file": str(path),
                "duration": round(result.duration, 3),
                "patches": int(len(result.patch_times)),
                "tags": [{"label": label, "score": round(score, 6)} for label, score in top],
            }
        )
        if not args.json:
            if not top:
                print(f"{path}: shorter than one patch ({result.duration:.2f} s); try --last-patch-mode repeat")
                continue
            print(f"{path}:")
            for label, score in top:
                print(f"  {score:.3f}  {label}")
    if args.json:
        print(json.dumps(results if len(results) != 1 else results[0], indent=2))
    return 1 if failures else 0


def plot(args: argparse.Namespace) -> int:
    from mirfeat.plot import plot_result

    try:
        model = load_model(args.model)
        result = model(args.file, last_patch_mode=args.last_patch_mode)
        output = args.output or args.file.with_suffix(".png").name
        plot_result(result, output, top=args.top, size=(args.width, args.height), dpi=args.dpi)
    except (AudioError, OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({len(result.patch_times)} patches, {len(result.mean())} classes)")
    return 0


def convert(args: argparse.Namespace) -> int:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mirfeat", description="Essentia's music models on onnxruntime")
    commands = parser.add_subparsers(dest="command", required=True)

    tagger = commands.add_parser("tag", help="print each file's top tags (mean over patches)")
    tagger.add_argument("files", nargs="+", type=Path)
    tagger.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})")
    tagger.add_argument("--top", type=int, default=5, help="how many tags (default 5)")
    tagger.add_argument("--json", action="store_true", help="print JSON instead of text")
    tagger.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    tagger.add_argument("--batch-size", type=int, default=64)
    tagger.add_argument("--last-patch-mode", default="discard", choices=("discard", "repeat"))
    tagger.set_defaults(run=tag)

    plotter = commands.add_parser("plot", help="draw a file's activations over time with the labels (PNG)")
    plotter.add_argument("file", type=Path)
    plotter.add_argument("-o", "--output", type=Path, help="PNG to write (default: FILE's name with .png)")
    plotter.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled name or .onnx path (default {DEFAULT_MODEL})")
    plotter.add_argument("--top", type=int, help="only the N classes with the highest mean")
    plotter.add_argument("--width", type=float, default=12.0, help="inches (default 12)")
    plotter.add_argument("--height", type=float, default=8.0, help="inches (default 8)")
    plotter.add_argument("--dpi", type=int, default=100)
    plotter.add_argument("--last-patch-mode", default="discard", choices=("discard", "repeat"))
    plotter.set_defaults(run=plot)

    converter = commands.add_parser("convert", help="Essentia .pb -> .onnx (needs the convert extra)")
    add_convert_arguments(converter)
    converter.set_defaults(run=convert)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
