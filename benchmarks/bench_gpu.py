"""MusiCNN, VGGish and EffNet audio-seconds per second on a GPU (or the CPU), from decoded arrays.

    python benchmarks/bench_gpu.py [--device cuda] [--configs fp32:16 fp32:auto fp16:auto]
        [--seconds 120] [--files 8] [--jobs 8] [--vggish PATH] [--effnet PATH] [--json OUT.json]

Per model and config (precision:batch_size), best of --repeats after one warm-up, where the time goes:
- graph: the onnxruntime runs alone, on patch inputs prepared beforehand (the device's ceiling);
- serial: `model(array)` per array, frontend then graph in one thread (the library call);
- run: the runner's loop (`mirfeat run`) over the arrays written as 16-bit WAV files, --jobs worker
  threads decoding and computing the frontend while the main thread runs batches that fill across
  files (model loaded once, no output files written);
- frontend: the frontend alone (bands and patch inputs) on 1 and on --jobs threads, the rate the
  workers can feed the device at; 1-thread x jobs vs jobs-thread rate says whether threads scale
  (numpy's FFT / matmul and PyAV release the GIL) or worker processes would be needed.

Models: MusiCNN is the bundled msd-musicnn-1; VGGish and EffNet are ONNX files with their JSON
beside them (`python -m conversion build-test-models --onnx` writes vggish-seeded-1.onnx;
`python -m conversion build-replicas --family effnet --size full --onnx` writes
discogs-effnet-bsdynamic-seeded-1.onnx); a model without a file is skipped. Audio: synthetic
(a chirp in noise), or --audio FILES decoded once and looped. fp16 configs use NAME.fp16.onnx
beside the model, or make one in a temporary copy (`python -m conversion fp16`, needs onnx). With --device cpu and small
--seconds/--files it checks itself in seconds on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from timing import audio_rate, best_of, wall_time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS_MODELS = ROOT / "benchmarks" / "results" / "models"


def synthetic(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    chirp = 0.4 * np.sin(2 * np.pi * (110 * (1 + seed) * t + 40 * t**2 / max(seconds, 1)))
    return (chirp + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def arrays_for(model, args: argparse.Namespace) -> list[np.ndarray]:
    rate = model.sample_rate
    if not args.audio:
        return [synthetic(args.seconds, rate, i) for i in range(args.files)]
    decoded = np.concatenate([model.load(path) for path in args.audio])
    n = int(args.seconds * rate)
    looped = np.tile(decoded, int(np.ceil(n * args.files / len(decoded))))
    return [looped[i * n : (i + 1) * n].copy() for i in range(args.files)]


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM mono: the cheapest file to decode, so `run` times little beyond the arrays' own work."""
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def frontend_feeds(model, signal: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The patch inputs of one array, batch by batch, as the runner's workers make them."""
    from mirfeat.patches import patch_batches

    bands = model.family.stream_bands(iter([signal]))
    batches = patch_batches(bands, model.patch_size, model.patch_hop_size, "discard", model.batch_size)
    return [model.patch_feeds(batch) for batch in batches]


def in_threads(fn: Callable[[np.ndarray], object], arrays: list[np.ndarray], jobs: int) -> None:
    pending = iter(arrays)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            fn(item)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bench_model(name: str, path: Path, config: str, args: argparse.Namespace) -> dict:
    import mirfeat
    from mirfeat.runner import _process
    from mirfeat.runtime import RunOptions

    precision, batch = config.split(":")
    if precision == "fp16":
        path = with_fp16_variant(path, Path(args.work))
    options = RunOptions(device=args.device, batch_size=batch if batch == "auto" else int(batch), precision=precision)
    load_s, model = wall_time(lambda: mirfeat.load_model(path, options=options))
    arrays = arrays_for(model, args)
    audio_s = sum(len(a) for a in arrays) / model.sample_rate
    graph_names = [model.graph.graph_name(n) for n in model.output_names]
    feeds = [f for a in arrays for f in frontend_feeds(model, a)]
    rows = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    row: dict = {
        "model": name,
        "file": path.name,
        "device": args.device,
        "precision": precision,
        "batch_size": model.batch_size,
        "batch_size_asked": batch,
        "load_s": round(load_s, 2),
        "audio_s": audio_s,
        "patches": int(len(next(iter(rows.values())))),
    }
    rate = lambda seconds: round(audio_rate(audio_s, seconds), 1)  # noqa: E731
    row["graph"] = rate(best_of(lambda: model.run_feeds(rows, graph_names), args.repeats).best)
    row["serial"] = rate(best_of(lambda: [model(a) for a in arrays], args.repeats).best)
    with tempfile.TemporaryDirectory() as tmp:
        wavs = [write_wav(Path(tmp) / f"a{i}.wav", a, model.sample_rate) for i, a in enumerate(arrays)]

        # The runner's own loop (mirfeat.runner), with the model loaded once: workers decode and
        # prepare files while batches fill across them; no output files are written.
        row["run"] = rate(best_of(lambda: list(_process(model, wavs, args.jobs, "discard")), args.repeats).best)
    one = best_of(lambda: [frontend_feeds(model, a) for a in arrays], args.repeats).best
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    many = best_of(lambda: in_threads(lambda a: frontend_feeds(model, a), arrays, args.jobs), args.repeats).best
    cpu_per_wall = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    row["frontend_1_thread"] = rate(one)
    row[f"frontend_{args.jobs}_threads"] = rate(many)
    row["frontend_thread_scaling"] = round(one / many, 2)
    row["frontend_threads_cpu_per_wall"] = round(cpu_per_wall, 2)  # > 1: threads ran at once (GIL released)
    return row


def with_fp16_variant(path: Path, work: Path) -> Path:
    """`path` where its NAME.fp16.onnx is beside it; else a copy in `work` with one made
    (`python -m conversion fp16`; needs onnx)."""
    from conversion.fp16 import fp16_path

    if fp16_path(path).is_file():
        return path
    copy = work / path.name
    if not fp16_path(copy).is_file():
        import shutil

        from conversion import fp16

        for file in path.parent.glob(f"{path.stem}*"):
            if file.suffix in (".onnx", ".json"):
                shutil.copy(file, work / file.name)
        fp16.convert(copy, check_seconds=0)
    return copy


def default_models(args: argparse.Namespace) -> dict[str, Path]:
    from mirfeat.model import BUNDLED_DIR

    found = {"musicnn": BUNDLED_DIR / "msd-musicnn-1.onnx"}
    vggish = args.vggish
    effnet = args.effnet or RESULTS_MODELS / "discogs-effnet-bsdynamic-seeded-1.onnx"
    for name, path in (("vggish", vggish), ("effnet", effnet)):
        if path is not None and Path(path).is_file():
            found[name] = Path(path)
        else:
            print(f"# {name}: no model file ({path or 'pass --' + name}), skipped", file=sys.stderr)
    return {name: found[name] for name in args.models if name in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    parser.add_argument("--configs", nargs="+", help="precision:batch_size (default: fp32:16 fp32:auto fp16:auto)")
    parser.add_argument("--models", nargs="+", default=["musicnn", "vggish", "effnet"])
    parser.add_argument("--vggish", type=Path, help="vggish-seeded-1.onnx (build-test-models --onnx)")
    parser.add_argument(
        "--effnet", type=Path, help=f"default {RESULTS_MODELS.relative_to(ROOT)}/discogs-effnet-bsdynamic-seeded-1.onnx"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each array")
    parser.add_argument("--files", type=int, default=8, help="how many arrays")
    parser.add_argument("--audio", type=Path, nargs="*", help="recordings to decode and loop (default: synthetic)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="runner / frontend threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    work = tempfile.TemporaryDirectory()
    args.work = work.name
    if args.configs is None:
        args.configs = ["fp32:16", "fp32:auto", "fp16:auto"] if args.device != "cpu" else ["fp32:16", "fp32:auto"]

    import onnxruntime as ort

    from mirfeat.runtime import resolve_device

    info = {
        "device": resolve_device(args.device),
        "providers": ort.get_available_providers(),
        "onnxruntime": ort.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "gpu": gpu_name(),
    }
    print("# " + json.dumps(info))
    rows = []
    for name, path in default_models(args).items():
        for config in args.configs:
            try:
                row = bench_model(name, path, config, args)
            except Exception as exc:  # e.g. no fp16 variant beside this model: say so, go on
                print(f"# {name} {config}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows, args.jobs)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=1))


def gpu_name() -> str | None:
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def print_table(rows: list[dict], jobs: int) -> None:
    print(
        "\n| model | precision | batch | graph | serial "
        f"| run (--jobs {jobs}) | frontend 1 thread | frontend {jobs} threads |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        batch = f"{r['batch_size']}" + (" (auto)" if r["batch_size_asked"] == "auto" else "")
        print(
            f"| {r['model']} | {r['precision']} | {batch} | {r['graph']:.0f} | {r['serial']:.0f} | {r['run']:.0f} "
            f"| {r['frontend_1_thread']:.0f} | {r[f'frontend_{jobs}_threads']:.0f} |"
        )
    print("(audio-seconds per second)")


if __name__ == "__main__":
    main()
