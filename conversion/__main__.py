"""`python -m conversion convert MODEL.pb [-o MODEL.onnx]`, `freeze-musicnn`, `freeze-tempocnn`,
`build-test-models`, `build-replicas -o DIR [--family effnet|maest|yamnet|fsdsinet|all] [--size small|full]
[--onnx]`, `quantize MODEL.onnx [--calibration DIR]` (the int8 copy `load_model(..., precision="int8")`
opens) and `fp16 MODEL.onnx...` (NAME.fp16.onnx beside each, for device="cuda", precision="fp16")."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pb", type=Path, help="Essentia frozen graph (.pb); its .json beside it is read")
    parser.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: beside the .pb)")
    parser.add_argument("--inputs", nargs="+", help="input tensor names (default: metadata, else the graph)")
    parser.add_argument("--outputs", nargs="+", help="output tensor names (default: metadata, else the graph)")
    parser.add_argument("--no-check", action="store_true", help="skip the TensorFlow vs onnxruntime check")
    parser.add_argument(
        "--batch",
        choices=["auto", "dynamic", "keep"],
        default="auto",
        help="batch dimension: auto (default) frees a batch of 1 or unknown and keeps a fixed batch > 1; "
        "dynamic frees every batch; keep keeps the graph's",
    )


def run_convert(args: argparse.Namespace) -> int:
    from conversion.convert import ConversionError, convert

    try:
        report = convert(
            args.pb,
            args.output,
            inputs=args.inputs,
            outputs=args.outputs,
            check=not args.no_check,
            batch=getattr(args, "batch", "auto"),
        )
    except (ConversionError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.onnx_path} and {report.json_path}")
    print(f"  inputs:  {', '.join(report.inputs.values())}")
    print(f"  outputs: {', '.join(report.outputs.values())}")
    if report.fixed_batch:
        print(f"  fixed batch: {', '.join(f'{k} {v}' for k, v in report.fixed_batch.items())}")
    if report.folded_flags:
        print(f"  folded to False: {', '.join(report.folded_flags)}")
    if report.frame_sharing:
        sharing = report.frame_sharing
        parts = f"{sharing['frames_model']} + {sharing['patch_model']}"
        print(f"  frame sharing: {parts} ({len(sharing['blocks'])} blocks)")
    for name, diff in report.max_abs_diff.items():
        print(f"  check vs TensorFlow, max abs diff {name}: {diff:.3g}")
    return 0


def run_freeze_musicnn(args: argparse.Namespace) -> int:
    from conversion import musicnn

    names = args.models or list(musicnn.MODELS)
    for name in names:
        pb = musicnn.freeze(name, args.output_dir)
        print(f"wrote {pb} and {pb.with_suffix('.json')}")
        if args.onnx:
            args.pb, args.output, args.inputs, args.outputs, args.no_check = pb, None, None, None, False
            if run_convert(args):
                return 1
    return 0


def run_freeze_tempocnn(args: argparse.Namespace) -> int:
    from conversion import tempocnn

    names = args.models or list(tempocnn.MODELS)
    try:
        for name in names:
            tempocnn.check_name(name)
        for name in names:
            pb, diff = tempocnn.freeze(name, args.output_dir)
            print(f"wrote {pb} and {pb.with_suffix('.json')} (frozen vs Keras, max abs diff {diff:.3g})")
            if args.onnx:
                args.pb, args.output, args.inputs, args.outputs, args.no_check = pb, None, None, None, False
                if run_convert(args):
                    return 1
    except (tempocnn.UnsupportedModel, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_build_test_models(args: argparse.Namespace) -> int:
    from conversion import testmodels

    graphs = testmodels.build_all(args.output_dir, n_heads=args.heads)
    for pb in graphs:
        print(f"wrote {pb} and {pb.with_suffix('.json')}")
    for pb in graphs if args.onnx else []:
        # One process per graph: tf2onnx peaks at ~11 GB on a full-size VGGish and keeps some of it.
        proc = subprocess.run([sys.executable, "-m", "conversion", "convert", str(pb)], check=False)
        if proc.returncode:
            return proc.returncode
    return 0


def _run_in_subprocess(command: list[str]) -> tuple[list[str], subprocess.CompletedProcess]:
    """`python -m conversion COMMAND...` in a fresh process, its output captured."""
    proc = subprocess.run([sys.executable, "-m", "conversion", *command], capture_output=True, text=True, check=False)
    return command, proc


_BSDYNAMIC_SOURCE = " (bsdynamic source)"


def run_build_replicas(args: argparse.Namespace) -> int:
    if not args.onnx:
        from conversion import replicas

        built = replicas.build(args.output_dir, args.family, args.size)
        for pb in built.graphs:
            print(f"wrote {pb} and {pb.with_suffix('.json')}")
        if built.effnet_bsdynamic:
            print(
                f"wrote {built.effnet_bsdynamic} and {built.effnet_bsdynamic.with_suffix('.json')}{_BSDYNAMIC_SOURCE}"
            )
        return 0

    # Every step in its own process: TensorFlow keeps what building took (4 GB for the full MAEST)
    # and tf2onnx what converting took (16 GB for the full MAEST), a few conversions at a time.
    command = ["build-replicas", "-o", str(args.output_dir), "--family", args.family, "--size", args.size]
    _, proc = _run_in_subprocess(command)
    print(proc.stdout, end="")
    if proc.returncode:
        print(f"error: building the replicas failed ({proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        return proc.returncode
    graphs, bsdynamic = [], None
    for line in proc.stdout.splitlines():
        if line.startswith("wrote ") and ".pb and " in line:
            pb = Path(line[len("wrote ") : line.index(".pb and ") + 3])
            graphs.append(pb)
            if line.endswith(_BSDYNAMIC_SOURCE):
                bsdynamic = pb
    jobs = args.jobs or (2 if args.size == "small" else 1)
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for (_, pb), proc in pool.map(_run_in_subprocess, [["convert", str(pb)] for pb in graphs]):
            print(proc.stdout, end="")
            if proc.returncode:
                print(f"error: converting {pb} failed ({proc.returncode}):\n{proc.stderr}", file=sys.stderr)
                failed = proc.returncode
    if failed or not bsdynamic:
        return failed
    from conversion import replicas

    onnx_path = replicas.publish_effnet_bsdynamic(bsdynamic.with_suffix(".onnx"), args.output_dir, args.size)
    print(f"wrote {onnx_path} and {onnx_path.with_suffix('.json')}")
    return 0


def run_fp16(args: argparse.Namespace) -> int:
    from conversion import fp16

    failed = False
    for path in args.models:
        try:
            report = fp16.convert(path, check_seconds=args.check_seconds)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {', '.join(str(p) for p in report.written)}")
        for name, diff in report.max_abs_diff.items():
            print(f"  check vs fp32 on the CPU ({args.check_seconds:g} s synthetic), max abs diff {name}: {diff:.3g}")
        # `not <=`: a NaN or inf difference (fp16 overflowed) fails as well as one over the limit.
        far = {name: r for name, r in report.relative_diff.items() if not r <= FP16_MAX_RELATIVE}
        for name, relative in far.items():
            print(
                f"error: {path}: fp16 output {name} differs from fp32 by {report.max_abs_diff[name]:.3g} "
                f"({relative:.3g} of the output's largest value, limit {FP16_MAX_RELATIVE:g}; values past "
                "float16's range?): its fp16 files are written but fail the check",
                file=sys.stderr,
            )
        failed |= bool(far)
    return 1 if failed else 0


FP16_MAX_RELATIVE = 0.01  # max abs diff over the output's largest |value|; MusiCNN's real weights: 0.2%


def run_quantize(args: argparse.Namespace) -> int:
    from conversion.quantize import COMPARED_BATCHES, QuantizationError, quantize
    from mirfeat.errors import ModelError

    # onnxruntime's quantizer suggests its shape pre-processing on every graph; the graphs here
    # come from the conversion step with their shapes inferred.
    logging.getLogger().addFilter(lambda record: "pre-process" not in record.getMessage())

    try:
        report = quantize(
            args.model,
            args.calibration,
            op_types=tuple(args.op_types),
            exclude=args.exclude,
            max_patches=args.max_patches,
            min_conv_taps=args.min_conv_taps,
        )
    except (QuantizationError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in report.written:
        print(f"wrote {path}")
    print(f"  {report.float_convs} convolutions with few taps kept in float32")
    print(f"  calibrated on {report.patches} patches of {len(report.signals)} signals in {report.seconds:.0f} s")
    print(f"  int8 vs float32 on up to {COMPARED_BATCHES} calibration batches:")
    for diff in report.differences:
        print(f"    {diff.graph} {diff.output}: max abs diff {diff.max_abs:.3g}, mean {diff.mean_abs:.3g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m conversion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_convert_arguments(commands.add_parser("convert", help="Essentia .pb -> .onnx (+ .json)"))
    freeze = commands.add_parser("freeze-musicnn", help="Essentia-format graphs from the musicnn wheel")
    freeze.add_argument("models", nargs="*", help="msd-musicnn-1, mtt-musicnn-1, msd-vgg-1, mtt-vgg-1 (default all)")
    freeze.add_argument("-o", "--output-dir", type=Path, default=Path("."))
    freeze.add_argument("--onnx", action="store_true", help="also convert each graph to ONNX")
    freeze_tempo = commands.add_parser(
        "freeze-tempocnn", help="Essentia-format TempoCNN graphs from the tempocnn wheel (AGPL v3 weights)"
    )
    freeze_tempo.add_argument(
        "models", nargs="*", help="deeptemp_k2, deepsquare_k1, shallowtemp_k1, dt_maz_v_fold0, ... (default all)"
    )
    freeze_tempo.add_argument("-o", "--output-dir", type=Path, default=Path("."))
    freeze_tempo.add_argument("--onnx", action="store_true", help="also convert each graph to ONNX")
    test_models = commands.add_parser(
        "build-test-models", help="VGGish-architecture graph, classifier and heads with seeded weights"
    )
    test_models.add_argument("-o", "--output-dir", type=Path, default=Path("."))
    test_models.add_argument("--heads", type=int, default=2, help="how many heads (default 2)")
    test_models.add_argument("--onnx", action="store_true", help="also convert each graph to ONNX")
    replicas = commands.add_parser(
        "build-replicas",
        help="EffNet-Discogs, MAEST, YAMNet and FSD-SINet graphs (and heads) in Essentia's format with seeded weights",
        description="Seeded replicas of Essentia's newer model families (see conversion/replicas.py).",
    )
    replicas.add_argument("-o", "--output-dir", type=Path, default=Path("."))
    replicas.add_argument("--family", choices=["effnet", "maest", "yamnet", "fsdsinet", "all"], default="all")
    replicas.add_argument("--size", choices=["small", "full"], default="small", help="small: tests; full: benchmarks")
    replicas.add_argument(
        "--onnx", action="store_true", help="also convert each graph and write the published bsdynamic EffNet ONNX"
    )
    replicas.add_argument("--jobs", type=int, help="conversions at once (default 2 for small, 1 for full)")
    half = commands.add_parser(
        "fp16", help="NAME.fp16.onnx beside a converted model: float16 inside, float32 inputs and outputs (CUDA)"
    )
    half.add_argument("models", nargs="+", type=Path, help="converted .onnx files (their .json beside them)")
    half.add_argument(
        "--check-seconds", type=float, default=10.0, help="synthetic audio to compare with fp32 on (0: no check)"
    )
    quantizer = commands.add_parser(
        "quantize",
        help="int8 copy of a converted audio model (static QDQ), calibrated on audio",
        description="Writes MODEL.int8.onnx (and the int8 frame-sharing parts) beside MODEL.onnx; "
        "see conversion/quantize.py.",
    )
    quantizer.add_argument("model", type=Path, help="converted audio model (.onnx with its .json beside it)")
    quantizer.add_argument(
        "--calibration", type=Path, help="directory of recordings to calibrate on (besides synthetic signals)"
    )
    quantizer.add_argument(
        "--op-types", nargs="+", default=["Conv", "MatMul", "Gemm"], help="ops to quantize (default Conv MatMul Gemm)"
    )
    quantizer.add_argument("--exclude", nargs="+", default=[], help="node names to keep in float32")
    quantizer.add_argument(
        "--min-conv-taps", type=int, default=256, help="Convs with fewer taps per output stay float32 (default 256)"
    )
    quantizer.add_argument("--max-patches", type=int, default=256, help="calibration patches in all (default 256)")
    args = parser.parse_args(argv)
    runs = {
        "convert": run_convert,
        "freeze-musicnn": run_freeze_musicnn,
        "freeze-tempocnn": run_freeze_tempocnn,
        "build-test-models": run_build_test_models,
        "build-replicas": run_build_replicas,
        "fp16": run_fp16,
        "quantize": run_quantize,
    }
    return runs[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
