"""mirfeat vs Essentia on the same audio and the same MusiCNN graph, in one run.

    python benchmarks/bench_musicnn.py [--durations 60 300] [--repeats 3]

Builds msd-musicnn-1.pb from the musicnn wheel (in a subprocess: TensorFlow and Essentia must not
share a process) unless --pb/--onnx are given, makes test audio of each duration from the shared
recordings, and times for both libraries:
- frontend: the mel signature of every frame (Essentia: TensorflowInputMusiCNN over FrameGenerator);
- end to end: 16 kHz signal -> activations (TensorflowPredictMusiCNN, batch 64, both);
- mirfeat's Model API on the same signal (activations and embeddings from one run).
Reports audio-seconds per second (best of --repeats) and mirfeat/Essentia ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from timing import audio_rate, best_of

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))


def test_audio(es, seconds: int) -> np.ndarray:
    """Real music, `seconds` long at 16 kHz: the shared recordings, looped."""
    parts = [
        es.MonoLoader(filename=str(SHARED / "audio" / n), sampleRate=16000)()
        for n in ("techno_loop.mp3", "dubstep.flac", "359628__mtg__sax-tenor-d-minor.wav")
    ]
    joined = np.concatenate(parts)
    reps = int(np.ceil(seconds * 16000 / len(joined)))
    return np.tile(joined, reps)[: seconds * 16000].astype(np.float32)


def build_models(out: Path) -> tuple[Path, Path]:
    subprocess.run(
        [sys.executable, "-m", "conversion", "freeze-musicnn", "msd-musicnn-1", "-o", str(out), "--onnx"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return out / "msd-musicnn-1.pb", out / "msd-musicnn-1.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pb", type=Path)
    parser.add_argument("--onnx", type=Path)
    args = parser.parse_args()

    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False  # FrameGenerator warns once per frame
    import essentia.standard as es

    import mirfeat
    from mirfeat.essentia import TensorflowPredictMusiCNN
    from mirfeat.signatures import MUSICNN

    tmp = tempfile.TemporaryDirectory()
    pb, onnx = (args.pb, args.onnx) if args.pb and args.onnx else build_models(Path(tmp.name))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"essentia {essentia.__version__}; mirfeat {mirfeat.__version__}"
    )

    essentia_frontend = es.TensorflowInputMusiCNN()
    essentia_predict = es.TensorflowPredictMusiCNN(graphFilename=str(pb))
    mirfeat_predict = TensorflowPredictMusiCNN(graphFilename=str(onnx))
    model = mirfeat.load_model(onnx)

    def essentia_bands(x):
        return [essentia_frontend(f) for f in es.FrameGenerator(x, frameSize=512, hopSize=256, startFromZero=False)]

    rows = []
    for seconds in args.durations:
        audio = test_audio(es, seconds)
        essentia_runs = {"frontend": essentia_bands, "end to end": essentia_predict}
        mirfeat_runs = {
            "frontend": MUSICNN.compute,
            "end to end": mirfeat_predict,
            "end to end, activations+embeddings": model,
        }
        for stage, run in mirfeat_runs.items():
            reference = essentia_runs.get(stage)
            t_essentia = best_of(partial(reference, audio), args.repeats).best if reference else None
            rows.append((seconds, stage, t_essentia, best_of(partial(run, audio), args.repeats).best))

    print(f"\n{'audio':>6} {'stage':<36} {'Essentia s/s':>13} {'mirfeat s/s':>12} {'ratio':>7}")
    for seconds, stage, t_e, t_m in rows:
        ess = f"{audio_rate(seconds, t_e):13.1f}" if t_e else f"{'-':>13}"
        ratio = f"{t_e / t_m:6.2f}x" if t_e else f"{'-':>7}"
        print(f"{seconds:>5}s {stage:<36} {ess} {audio_rate(seconds, t_m):12.1f} {ratio}")
    print(
        "\n(audio-seconds processed per second of wall time, best of "
        f"{args.repeats}; ratio = Essentia time / mirfeat time)"
    )


if __name__ == "__main__":
    main()
