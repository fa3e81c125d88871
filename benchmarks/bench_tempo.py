"""TempoCNN end to end: mirfeat vs Essentia on the same audio and the same deeptemp_k16 graph, in one run.

    python benchmarks/bench_tempo.py [--durations 60 300] [--repeats 3] [--json PATH]

Graph: the shared tempocnn/deeptemp_k16.pb (what Essentia runs), converted once to
benchmarks/results/models/deeptemp_k16.onnx (gitignored) when missing. Audio: the shared
techno_loop.mp3 decoded once at 11025 Hz by Essentia's MonoLoader and tiled to each duration.

End to end = 11025 Hz float32 array -> (global BPM, local tempi, probabilities):
- essentia: `essentia.standard.TempoCNN(graphFilename=deeptemp_k16.pb)` (batchSize 64, majority);
- mirfeat facade: `mirfeat.essentia.TempoCNN(graphFilename=deeptemp_k16.onnx)`, same defaults;
- mirfeat model: `mirfeat.load_model(onnx)(audio, sample_rate=11025).tempo()`.
Each job runs in its own subprocess (Essentia never shares a process with onnxruntime), warms up
once, then keeps the best of --repeats. Reports audio-seconds per second of wall time and the
ratio Essentia time / mirfeat time, checks that every job found the same global tempo, and writes
the figures as JSON (default benchmarks/results/bench_tempo.json).
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
PB = SHARED / "essentia-models" / "tempocnn" / "deeptemp_k16.pb"
MODELS = ROOT / "benchmarks" / "results" / "models"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_tempo.json"
AUDIO_FILE = SHARED / "audio" / "techno_loop.mp3"
SAMPLE_RATE = 11025
JOBS = ("essentia", "mirfeat-facade", "mirfeat-model")


MIN_SECONDS = 12  # one 256-frame patch at 512/11025 s per frame: 11.85 s


def run_job(job: str, audio_dir: Path, durations: list[int], repeats: int, onnx: Path) -> dict:
    """One library's runs on every duration (in this process)."""
    if job == "essentia":
        import essentia

        essentia.log.infoActive = False
        essentia.log.warningActive = False
        import essentia.standard as es

        algorithm = es.TempoCNN(graphFilename=str(PB))
        version = essentia.__version__

        def tempo(audio):
            return float(algorithm(audio)[0])
    else:
        import mirfeat
        from mirfeat.essentia import TempoCNN

        version = mirfeat.__version__
        if job == "mirfeat-facade":
            facade = TempoCNN(graphFilename=str(onnx))

            def tempo(audio):
                return float(facade(audio)[0])
        else:
            model = mirfeat.load_model(onnx)

            def tempo(audio):
                return model(audio, sample_rate=SAMPLE_RATE).tempo().bpm

    result: dict = {"version": version, "durations": {}}
    for seconds in durations:
        audio = np.load(audio_dir / f"{seconds}.npy")
        timing = best_of(lambda audio=audio: tempo(audio), repeats)
        result["durations"][str(seconds)] = {"seconds": timing.best, "bpm": timing.value}
    return result


def prepare(durations: list[int], audio_dir: Path, onnx: Path) -> None:
    """The test audio of each duration (.npy) and the ONNX conversion, each in a subprocess."""
    code = (
        "import sys, numpy as np, essentia; essentia.log.infoActive = False; import essentia.standard as es; "
        f"x = es.MonoLoader(filename={str(AUDIO_FILE)!r}, sampleRate={SAMPLE_RATE})(); "
        f"[np.save(f'{audio_dir}/{{s}}.npy', np.tile(x, -(-s * {SAMPLE_RATE} // len(x)))[: s * {SAMPLE_RATE}]) "
        f"for s in {durations}]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    if not onnx.is_file():
        onnx.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "conversion", "convert", str(PB), "-o", str(onnx)],
            check=True,
            cwd=ROOT,
            capture_output=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx", type=Path, default=MODELS / "deeptemp_k16.onnx")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")
    parser.add_argument("--job", choices=JOBS, help=argparse.SUPPRESS)  # one job, in a subprocess
    parser.add_argument("--audio-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    durations = sorted(args.durations)
    if durations[0] < MIN_SECONDS:  # shorter audio has no patch: no tempo to compare
        parser.error(f"--durations: at least {MIN_SECONDS} s, one TempoCNN patch")

    if args.job:
        print(json.dumps(run_job(args.job, args.audio_dir, durations, args.repeats, args.onnx)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        prepare(durations, Path(tmp), args.onnx)
        results = {}
        for job in JOBS:
            command = [sys.executable, __file__, "--job", job, "--audio-dir", tmp, "--onnx", str(args.onnx)]
            command += ["--durations", *map(str, durations), "--repeats", str(args.repeats)]
            proc = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            results[job] = json.loads(proc.stdout.strip().splitlines()[-1])

    header = (
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"essentia {results['essentia']['version']}; mirfeat {results['mirfeat-model']['version']}; "
        f"best of {args.repeats}"
    )
    print(header)
    print(f"\n{'audio':>6} {'mirfeat run':<16} {'Essentia s/s':>13} {'mirfeat s/s':>12} {'ratio':>7}  BPM")
    rows = []
    for seconds in durations:
        reference = results["essentia"]["durations"][str(seconds)]
        for job in JOBS[1:]:
            mine = results[job]["durations"][str(seconds)]
            row = {
                "audio_seconds": seconds,
                "run": job,
                "essentia_audio_s_per_s": audio_rate(seconds, reference["seconds"]),
                "mirfeat_audio_s_per_s": audio_rate(seconds, mine["seconds"]),
                "ratio": reference["seconds"] / mine["seconds"],
                "same_bpm": mine["bpm"] == reference["bpm"],
            }
            rows.append(row)
            print(
                f"{seconds:>5}s {job:<16} {row['essentia_audio_s_per_s']:13.1f} {row['mirfeat_audio_s_per_s']:12.1f} "
                f"{row['ratio']:6.2f}x  {mine['bpm']:g} (Essentia {reference['bpm']:g})"
            )
    print("\n(audio-seconds per second of wall time; ratio = Essentia time / mirfeat time)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"header": header, "rows": rows, "results": results}, indent=1) + "\n")
    print(f"wrote {args.json}")
    if not all(row["same_bpm"] for row in rows):
        sys.exit("error: a mirfeat run found another global tempo than Essentia")


if __name__ == "__main__":
    main()
