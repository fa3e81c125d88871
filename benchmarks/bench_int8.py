"""int8 vs fp32: accuracy on the shared recordings and speed, for every audio family.

    python benchmarks/bench_int8.py [--seconds 60] [--repeats 3] [--only musicnn vggish ...]
                                    [--work DIR] [--effnet ONNX] [--maest ONNX] [--profile]

Models (copied or built into --work, default benchmarks/results/int8/, then quantized there with
`python -m conversion quantize MODEL.onnx --calibration ../shared/audio`):
- musicnn: the bundled msd-musicnn-1 (real weights);
- vggish: the full-size VGGish architecture with seeded weights (`build-test-models`);
- effnet: the full-size seeded EffNet-Discogs bsdynamic replica (--effnet), with the conversion
  step's current rewrites applied (the fp32 baseline is what a conversion writes today);
- maest: the small seeded MAEST 10 s replica (`build-replicas --size small`; --maest for another);
- deeptemp: Essentia's TempoCNN deeptemp_k16 (real weights), converted from the shared graph.

Accuracy is measured against mirfeat's fp32 model on the same decoded samples; mirfeat's fp32
equals Essentia within the parity tests' tolerances (1e-5 on activations), far below the int8
differences. Per recording: max and mean absolute difference of every output, whether the top 5
classes of the mean activations are the same set (and how many agree), and the cosine similarity
of fp32 and int8 embeddings row by row (mean and min). Speed: end to end (decoded samples ->
outputs) on the techno loop repeated to --seconds, fp32 and int8 in alternating rounds, best of
--repeats, as audio-seconds per second. The fp32 rounding floor (`rounding_floor`) tells
how much two fp32 runs of the model differ by float arithmetic order alone. Writes bench_int8.json
and bench_int8.md into --work. Timings taken while other work loads the machine are unreliable.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
from timing import audio_rate, interleaved

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mirfeat  # noqa: E402
from mirfeat.model import Model, essentia_rows  # noqa: E402
from mirfeat.runtime import RunOptions  # noqa: E402

SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
AUDIO_DIR = SHARED / "audio"
RESULTS_MODELS = ROOT / "benchmarks" / "results" / "models"
FAMILIES = ("musicnn", "vggish", "effnet", "maest", "deeptemp")


def conversion(*args: str) -> None:
    """`python -m conversion ARGS` in a fresh process (TensorFlow stays out of this one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "conversion", *args]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"python -m conversion {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def copy_model(onnx_path: Path, work: Path) -> Path:
    if not onnx_path.is_file():
        raise SystemExit(f"{onnx_path}: no such model (build the full-size replicas, or pass its path)")
    work.mkdir(parents=True, exist_ok=True)
    for path in onnx_path.parent.glob(f"{onnx_path.stem}.*"):
        if ".int8." not in path.name and path.suffix in (".onnx", ".json"):
            shutil.copy(path, work / path.name)
    return work / onnx_path.name


def prepare(family: str, work: Path, args: argparse.Namespace) -> Path:
    """The fp32 model of a family in `work` (copied or built once)."""
    if family == "musicnn":
        return copy_model(mirfeat.model.BUNDLED_DIR / "msd-musicnn-1.onnx", work / "musicnn")
    if family == "vggish":
        path = work / "vggish" / "vggish-seeded-1.onnx"
        if not path.is_file():
            conversion("build-test-models", "-o", str(path.parent), "--heads", "0", "--onnx")
        return path
    if family == "effnet":
        path = copy_model(args.effnet, work / "effnet")
        import onnx

        from conversion.optimize import optimize

        proto = onnx.load(str(path))
        print(f"  effnet: conversion rewrites applied to the copy: {optimize(proto)}")
        onnx.save(proto, str(path))
        return path
    if family == "maest":
        if args.maest:
            return copy_model(args.maest, work / "maest")
        path = work / "maest" / "discogs-maest-10s-pw-small-seeded-2.onnx"
        if not path.is_file():
            conversion("build-replicas", "-o", str(path.parent), "--family", "maest", "--size", "small", "--onnx")
        return path
    if family == "deeptemp":
        path = work / "deeptemp" / "deeptemp_k16.onnx"
        if not path.is_file():
            conversion("convert", str(SHARED / "essentia-models" / "tempocnn" / "deeptemp_k16.pb"), "-o", str(path))
        return path
    raise ValueError(family)


def rows(value: np.ndarray) -> np.ndarray:
    return essentia_rows(np.asarray(value, np.float64))


def accuracy(fp32: Model, int8: Model) -> list[dict]:
    """Per shared recording: differences of every output, top-5 agreement, embedding cosines."""
    out = []
    for audio in sorted(AUDIO_DIR.glob("*")):
        if audio.suffix not in (".wav", ".flac", ".mp3", ".ogg"):
            continue
        samples = fp32.load(audio)
        a, b = fp32(samples, last_patch_mode="repeat"), int8(samples, last_patch_mode="repeat")
        record: dict = {"recording": audio.name, "patches": int(len(a.patch_times)), "outputs": {}}
        for name in a.outputs:
            x, y = rows(a.outputs[name]), rows(b.outputs[name])
            diff = np.abs(x - y)
            record["outputs"][name] = {
                "max_abs": float(diff.max()),
                "mean_abs": float(diff.mean()),
                "fp32_max_abs": float(np.abs(x).max()),  # the scale: embeddings are not in [0, 1]
            }
        if a.predictions_name and a.predictions_name in a.outputs:
            x, y = rows(a.outputs[a.predictions_name]), rows(b.outputs[a.predictions_name])
            top_a, top_b = set(np.argsort(-x.mean(0))[:5]), set(np.argsort(-y.mean(0))[:5])
            record["top5_same"] = top_a == top_b
            record["top5_agree"] = len(top_a & top_b)
        if a.embeddings_name and a.embeddings_name in a.outputs:
            x, y = rows(a.outputs[a.embeddings_name]), rows(b.outputs[a.embeddings_name])
            cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)
            record["embedding_cosine_mean"] = float(cos.mean())
            record["embedding_cosine_min"] = float(cos.min())
        out.append(record)
    return out


def speed(models: dict[str, Model], seconds: int, repeats: int) -> dict:
    """End-to-end audio-s/s of each model ({"fp32": ..., "int8": ..., others}) on the techno loop
    repeated to `seconds`, in alternating rounds (a busy moment hits them alike)."""
    fp32 = models["fp32"]
    loop = fp32.load(AUDIO_DIR / "techno_loop.mp3")
    signal = np.tile(loop, int(np.ceil(seconds * fp32.sample_rate / len(loop))))[: seconds * fp32.sample_rate]
    # A warm-up run of each first: first-run allocations.
    timings = interleaved({label: partial(model, signal) for label, model in models.items()}, repeats)
    best = {label: timing.best for label, timing in timings.items()}
    result: dict = {"seconds": seconds, "load_average": os.getloadavg()[0]}
    for label, t in best.items():
        result[f"{label}_audio_s_per_s"] = audio_rate(seconds, t)
    result["speedup"] = best["fp32"] / best["int8"]
    return result


def rounding_floor(model: Model, output: str) -> float:
    """Max abs difference of `output` between two fp32 runs of the whole graph that differ only in
    the order of float arithmetic (onnxruntime's basic vs full optimisation: blocked layouts, fused
    kernels), on 16 patches of the techno loop: how sensitive the weights are to rounding. A seeded
    replica whose floor is large (saturating sigmoids, exploding activations) says little about int8."""
    import onnxruntime as ort

    from mirfeat.patches import patch_batches

    samples = model.load(AUDIO_DIR / "techno_loop.mp3")
    batch = next(patch_batches([model.family.bands(samples)], model.patch_size, model.patch_hop_size, "repeat", 16))
    feeds = {model.graph.input_name: model.graph.fit_to_input(model.family.model_input(batch.patches))}
    name = model.graph.graph_name(output)
    runs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.log_severity_level = 3
        session = ort.InferenceSession(str(model.graph.session.path), options, providers=["CPUExecutionProvider"])
        runs.append(session.run([name], feeds)[0])
    return float(np.abs(runs[0] - runs[1]).max())


def profile(model: Model, runs: int = 3) -> dict[str, float]:
    """onnxruntime's per-op-type share of one batch of the model's own inputs (fraction of time)."""
    import onnxruntime as ort

    from mirfeat.patches import patch_batches

    samples = model.load(AUDIO_DIR / "techno_loop.mp3")
    batch = next(patch_batches([model.family.bands(samples)], model.patch_size, model.patch_hop_size, "repeat", 16))
    feeds = model.patch_feeds(batch)
    graph = model.frame_sharing.rest if model.frame_sharing and len(feeds) > 1 else model.graph.session
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph.path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    for _ in range(runs):
        session.run(None, feeds)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    by_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values()) or 1
    return {op: round(t / total, 3) for op, t in by_op.most_common(8)}


def markdown(results: dict) -> str:
    lines = [
        "| model | weights | output | max abs diff (worst recording) | fp32 max abs (scale) | mean abs diff "
        "| top-5 same | embedding cosine (min) | fp32 rounding floor | fp32 audio-s/s | int8 audio-s/s | int8 / fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, r in results.items():
        recs = r["recordings"]
        name = r["activations"]
        worst = max(rec["outputs"][name]["max_abs"] for rec in recs)
        scale = max(rec["outputs"][name]["fp32_max_abs"] for rec in recs)
        mean = float(np.mean([rec["outputs"][name]["mean_abs"] for rec in recs]))
        same = [rec["top5_same"] for rec in recs if "top5_same" in rec]
        cosines = [rec["embedding_cosine_min"] for rec in recs if "embedding_cosine_min" in rec]
        s = r["speed"]
        lines.append(
            f"| {family} | {r['weights']} | {r['activations_kind']} | {worst:.3g} | {scale:.3g} | {mean:.3g} | "
            f"{f'{sum(same)}/{len(same)}' if same else '-'} | {f'{min(cosines):.4f}' if cosines else '-'} | "
            f"{r['fp32_rounding_floor']:.2g} | "
            f"{s['fp32_audio_s_per_s']:.0f} | {s['int8_audio_s_per_s']:.0f} | {s['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


WEIGHTS = {
    "musicnn": "real (msd-musicnn-1)",
    "vggish": "seeded full-size",
    "effnet": "seeded full-size",
    "maest": "seeded replica",
    "deeptemp": "real (deeptemp_k16)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--seconds", type=int, default=60, help="audio length for the speed runs (default 60)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "int8")
    parser.add_argument("--effnet", type=Path, default=RESULTS_MODELS / "discogs-effnet-bsdynamic-seeded-1.onnx")
    parser.add_argument("--maest", type=Path, help="a MAEST .onnx to use instead of the small replica")
    parser.add_argument("--profile", action="store_true", help="per-op-type time shares, fp32 and int8")
    parser.add_argument("--requantize", action="store_true", help="quantize again even where int8 files exist")
    args = parser.parse_args()

    from conversion.quantize import quantize
    from mirfeat.model import int8_path

    results = {}
    for family in args.only:
        print(f"{family}:", flush=True)
        path = prepare(family, args.work, args)
        if args.requantize or not int8_path(path).is_file():
            report = quantize(path, AUDIO_DIR)
            kept = f"{report.float_convs} convs fp32"
            print(f"  quantized in {report.seconds:.0f} s on {report.patches} patches ({kept})")
        fp32 = mirfeat.load_model(path)
        int8 = mirfeat.load_model(path, precision="int8")
        assert isinstance(fp32, Model) and isinstance(int8, Model)
        result = {"model": path.name, "weights": WEIGHTS[family], "batch_size": fp32.batch_size}
        # The table's activation columns: the predictions output, else the first output.
        result["activations"] = fp32.predictions_name or fp32.embeddings_name or fp32.output_names[0]
        result["activations_kind"] = (
            "predictions" if fp32.predictions_name else "embeddings" if fp32.embeddings_name else "output"
        )
        result["recordings"] = accuracy(fp32, int8)
        result["fp32_rounding_floor"] = rounding_floor(fp32, result["activations"])
        models = {"fp32": fp32, "int8": int8}
        if int8.frame_sharing is not None:  # is frame sharing still worth it in int8?
            whole = RunOptions(precision="int8", frame_sharing=False, batch_size=int8.batch_size)
            models["int8 whole graph per patch"] = mirfeat.load_model(path, options=whole)
        result["speed"] = speed(models, args.seconds, args.repeats)
        if args.profile:
            result["profile"] = {"fp32": profile(fp32), "int8": profile(int8)}
        results[family] = result
        s = result["speed"]
        others = "".join(f", {k[: -len('_audio_s_per_s')]} {v:.0f}" for k, v in s.items() if "whole" in k)
        rates = f"{s['fp32_audio_s_per_s']:.0f} -> {s['int8_audio_s_per_s']:.0f} audio-s/s"
        print(
            f"  {rates} ({s['speedup']:.2f}x{others}), "
            f"load {s['load_average']:.1f}; fp32 rounding floor {result['fp32_rounding_floor']:.2g}",
            flush=True,
        )
        for rec in result["recordings"]:
            worst = rec["outputs"][result["activations"]]["max_abs"]
            extra = f" top5 {rec['top5_agree']}/5" if "top5_agree" in rec else ""
            extra += f" cos min {rec['embedding_cosine_min']:.4f}" if "embedding_cosine_min" in rec else ""
            print(f"    {rec['recording']:<40} max {worst:.3g}{extra}")
        if args.profile:
            print(f"    profile fp32 {result['profile']['fp32']}\n    profile int8 {result['profile']['int8']}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "bench_int8.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.work / "bench_int8.md").write_text(table)
    print("\n" + table)
    print(f"(vs mirfeat fp32; speed end to end on {args.seconds} s, best of {args.repeats}; wrote {args.work})")


if __name__ == "__main__":
    main()
