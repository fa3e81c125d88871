"""CREPE (crepe-tiny-1): mirfeat vs Essentia's PitchCREPE, end to end, in one run.

    python benchmarks/bench_crepe.py [--durations 60 300] [--repeats 3] [--models DIR] [--hop-size MS] [--reconvert]

Model: the shared ../shared/essentia-models/crepe/crepe-tiny-1.pb (what Essentia runs), converted
once into --models (default benchmarks/results/models, gitignored) when its .onnx is missing, or
again with --reconvert (after a change to the conversion's graph rewrites).
Audio: the shared tenor saxophone recording (monophonic, pitched) decoded once at 16 kHz by
Essentia's MonoLoader and tiled to each duration.

End to end = 16 kHz float32 array -> time, frequency, confidence, activations:
- Essentia: PitchCREPE(graphFilename=crepe-tiny-1.pb, hopSize).
- mirfeat: the facade (`mirfeat.essentia.PitchCREPE`, .onnx for .pb) and the model API
  (`load_model(onnx, hop_ms=...)(audio).pitch()`).
- Where mirfeat's time goes: the frontend alone (`CREPE.compute`: framing + per-frame
  standardisation) and the graph alone (onnxruntime on ready frames, batches of 64).

Every job runs in its own subprocess (Essentia never shares a process with onnxruntime), warms up
on one second of audio, then keeps the best of --repeats. Both sides' outputs on the shortest
duration are compared (max |diff| of activations) as a check that they did the same work. Results:
printed as a table and written to benchmarks/results/bench_crepe-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from timing import audio_rate, best_of

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
DEFAULT_MODELS = ROOT / "benchmarks" / "results" / "models"
CREPE_PB = SHARED / "essentia-models" / "crepe" / "crepe-tiny-1.pb"
AUDIO_FILE = SHARED / "audio" / "359628__mtg__sax-tenor-d-minor.wav"
SAMPLE_RATE = 16000

# job -> what it runs; the name's prefix is the side. Each job is one subprocess.
JOBS = {
    "essentia-pitchcrepe": "PitchCREPE(crepe-tiny-1.pb)",
    "mirfeat-facade": "mirfeat.essentia.PitchCREPE(crepe-tiny-1.onnx)",
    "mirfeat-model": "load_model(crepe-tiny-1.onnx)(audio).pitch()",
    "mirfeat-frontend": "CREPE.compute (numpy framing + standardisation)",
    "mirfeat-graph": "onnxruntime on ready frames (batches of 64)",
}


def run_job(job: str, audio_path: Path, durations: list[int], repeats: int, onnx: Path, hop_ms: float) -> dict:
    """In a subprocess: time `job` on the audio tiled to each duration; best of `repeats`."""
    audio = np.load(audio_path)
    tiles = {d: np.resize(audio, d * SAMPLE_RATE) for d in durations}
    if job == "essentia-pitchcrepe":
        import essentia

        essentia.log.infoActive = essentia.log.warningActive = False
        import essentia.standard as es

        algorithm = es.PitchCREPE(graphFilename=str(CREPE_PB), hopSize=hop_ms)

        def work(x):
            return algorithm(x)[3]
    elif job == "mirfeat-facade":
        from mirfeat.essentia import PitchCREPE

        facade = PitchCREPE(graphFilename=str(onnx), hopSize=hop_ms)

        def work(x):
            return facade(x)[3]
    elif job == "mirfeat-model":
        import mirfeat

        model = mirfeat.load_model(onnx, hop_ms=hop_ms)

        def work(x):
            result = model(x, sample_rate=SAMPLE_RATE)
            result.pitch()
            return result.activations
    elif job == "mirfeat-frontend":
        from mirfeat.signatures import CREPE

        frontend = CREPE.with_hop_ms(hop_ms)

        def work(x):
            return frontend.compute(x)
    elif job == "mirfeat-graph":
        import mirfeat
        from mirfeat.signatures import CREPE

        model = mirfeat.load_model(onnx, hop_ms=hop_ms)
        frontend = CREPE.with_hop_ms(hop_ms)
        ready = {len(x): frontend.compute(x) for x in tiles.values()}  # framed outside the timing
        name = model.predictions_name or model.output_names[0]

        def work(x):
            frames = ready[len(x)] if len(x) in ready else frontend.compute(x)
            return model.graph.run(frames, [name], 64)[name]
    else:
        raise ValueError(job)
    work(tiles[durations[0]][:SAMPLE_RATE])  # warm-up, on one second
    seconds, outputs = {}, {}
    for d in durations:
        timing = best_of(lambda x=tiles[d]: work(x), repeats, warmup=False)
        seconds[d] = timing.best
        outputs[d] = np.asarray(timing.value)
    return {"seconds": seconds, "check": outputs[durations[0]]}


def _job_main(argv: list[str]) -> None:
    job, audio, durations, repeats, onnx, hop_ms, out = argv
    result = run_job(job, Path(audio), json.loads(durations), int(repeats), Path(onnx), float(hop_ms))
    np.save(out + ".npy", result["check"])
    Path(out + ".json").write_text(json.dumps({str(k): v for k, v in result["seconds"].items()}))


def ensure_onnx(models: Path, reconvert: bool = False) -> Path:
    onnx = models / "crepe-tiny-1.onnx"
    if reconvert or not onnx.is_file():
        models.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "conversion", "convert", str(CREPE_PB), "-o", str(onnx)], cwd=ROOT, check=True
        )
    return onnx


def load_audio() -> np.ndarray:
    """The recording at 16 kHz through Essentia's MonoLoader, in a subprocess (no Essentia here)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audio.npy"
        code = (
            "import essentia, numpy as np, sys; essentia.log.infoActive = False; "
            "import essentia.standard as es; "
            f"np.save(sys.argv[2], es.MonoLoader(filename=sys.argv[1], sampleRate={SAMPLE_RATE})())"
        )
        subprocess.run([sys.executable, "-c", code, str(AUDIO_FILE), str(out)], check=True)
        return np.load(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 300], help="seconds (default 60 300)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--hop-size", type=float, default=10.0, help="ms (default 10)")
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    parser.add_argument("--output", type=Path, help="JSON to write (default benchmarks/results/bench_crepe-*.json)")
    parser.add_argument("--reconvert", action="store_true", help="convert the .pb again even if the .onnx exists")
    args = parser.parse_args()
    durations = sorted(args.durations)
    onnx = ensure_onnx(args.models, args.reconvert)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    seconds: dict[str, dict[str, float]] = {}
    checks: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        audio_path = Path(tmp) / "audio.npy"
        np.save(audio_path, load_audio())
        for job in args.jobs:
            out = str(Path(tmp) / job)
            command = [sys.executable, __file__, "--job", job, str(audio_path), json.dumps(durations)]
            command += [str(args.repeats), str(onnx), str(args.hop_size), out]
            subprocess.run(command, env=env, check=True)
            seconds[job] = json.loads(Path(out + ".json").read_text())
            checks[job] = np.load(out + ".npy")

    reference = checks.get("essentia-pitchcrepe")
    agreement = {}
    for job in ("mirfeat-facade", "mirfeat-model"):
        if reference is not None and job in checks:
            agreement[job] = float(np.nanmax(np.abs(checks[job] - reference)))
    rows = []
    print(f"{'job':22} {'seconds':>10} {'audio-s/s':>10} {'vs Essentia':>12}   (duration)")
    for d in durations:
        key = str(d)
        base = seconds.get("essentia-pitchcrepe", {}).get(key)
        for job in args.jobs:
            s = seconds[job][key]
            ratio = base / s if base else None
            rate = audio_rate(d, s)
            rows.append(
                {"job": job, "runs": JOBS[job], "duration_s": d, "seconds": s, "audio_s_per_s": rate, "ratio": ratio}
            )
            ratio_text = f"{ratio:.2f}x" if ratio else "-"
            print(f"{job:22} {s:10.3f} {rate:10.1f} {ratio_text:>12}   ({d} s)")
    print("max |activations - Essentia's| on the shortest duration:", agreement)
    report = {
        "benchmark": "bench_crepe",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "model": "crepe-tiny-1",
        "audio": AUDIO_FILE.name,
        "hop_ms": args.hop_size,
        "repeats": args.repeats,
        "rows": rows,
        "max_abs_diff_activations": agreement,
    }
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or ROOT / "benchmarks" / "results" / f"bench_crepe-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        _job_main(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
