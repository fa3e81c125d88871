"""VGGish and the one-embedding-many-heads job: mirfeat vs Essentia, same audio and graphs, one run.

    python benchmarks/bench_vggish_heads.py [--durations 60 300] [--heads 10] [--models DIR]

Models: a full-size VGGish-architecture graph with seeded weights and `--heads` classifier heads on
its embeddings (`python -m conversion build-test-models`, run here in a subprocess unless --models
points at its output). Timed, best of --repeats:
- VGGish end to end: 16 kHz signal -> embeddings (TensorflowPredictVGGish, batch 64, both);
- heads: Essentia as its docs show (embeddings once, then TensorflowPredict2D per head) vs
  mirfeat's Pipeline (one embedding pass, every head on the same embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_musicnn import test_audio  # noqa: E402
from timing import audio_rate, best_of  # noqa: E402


def build_models(out: Path, heads: int) -> Path:
    subprocess.run(
        [sys.executable, "-m", "conversion", "build-test-models", "-o", str(out), "--heads", str(heads), "--onnx"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, help="output of `python -m conversion build-test-models --onnx`")
    args = parser.parse_args()

    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    import mirfeat
    from mirfeat.essentia import TensorflowPredictVGGish

    tmp = tempfile.TemporaryDirectory()
    models = args.models or build_models(Path(tmp.name), args.heads)
    head_paths = sorted(models.glob("task*-vggish-seeded-1.onnx"), key=lambda p: int(p.stem[4:].split("-")[0]))
    head_paths = head_paths[: args.heads]
    if len(head_paths) < args.heads:
        raise SystemExit(f"{models} has {len(head_paths)} heads; build it with --heads {args.heads}")
    embedding_pb = models / "vggish-seeded-1.pb"

    essentia_embedder = es.TensorflowPredictVGGish(graphFilename=str(embedding_pb), output="model/vggish/embeddings")
    essentia_heads = []
    for path in head_paths:
        schema = json.loads(path.with_suffix(".json").read_text())["schema"]
        essentia_heads.append(
            es.TensorflowPredict2D(
                graphFilename=str(path.with_suffix(".pb")),
                input=schema["inputs"][0]["name"],
                output=schema["outputs"][0]["name"],
            )
        )
    mirfeat_embedder = TensorflowPredictVGGish(
        graphFilename=str(models / "vggish-seeded-1.onnx"), output="model/vggish/embeddings"
    )
    pipeline = mirfeat.Pipeline(head_paths)

    def essentia_heads_job(audio):
        embeddings = essentia_embedder(audio)
        return [head(embeddings) for head in essentia_heads]

    rows = []
    for seconds in args.durations:
        audio = test_audio(es, seconds)
        jobs = {
            "VGGish end to end": (essentia_embedder, mirfeat_embedder),
            f"embedding + {args.heads} heads": (essentia_heads_job, pipeline),
        }
        for stage, (reference, ours) in jobs.items():
            rows.append(
                (
                    seconds,
                    stage,
                    best_of(partial(reference, audio), args.repeats).best,
                    best_of(partial(ours, audio), args.repeats).best,
                )
            )

    print(f"\n{'audio':>6} {'stage':<28} {'Essentia s/s':>13} {'mirfeat s/s':>12} {'ratio':>7}")
    for seconds, stage, t_e, t_m in rows:
        e_rate, m_rate = audio_rate(seconds, t_e), audio_rate(seconds, t_m)
        print(f"{seconds:>5}s {stage:<28} {e_rate:13.1f} {m_rate:12.1f} {t_e / t_m:6.2f}x")
    print(f"\n(audio-seconds per second of wall time, best of {args.repeats}; ratio = Essentia time / mirfeat time)")


if __name__ == "__main__":
    main()
