"""EffNet-Discogs (bs64 and bsdynamic) and MAEST 10 s: mirfeat vs Essentia, end to end, in one run.

    python benchmarks/bench_effnet_maest.py [--durations 60 300] [--repeats 3] [--models DIR]
                                            [--families effnet maest] [--update-readme]

Models: the full-size seeded replicas (`python -m conversion build-replicas --size full --onnx`,
see conversion/replicas.py), built into --models (default benchmarks/results/models, gitignored)
when missing: ~35 s for EffNet, ~1.5 min and ~16 GB peak for MAEST. Audio: the shared
techno_loop.mp3 decoded once at 16 kHz by Essentia's MonoLoader and tiled to each duration.

End to end = 16 kHz float32 array -> outputs, on both sides:
- Essentia: TensorflowPredictEffnetDiscogs(graphFilename=bs64.pb, output="PartitionedCall:1")
  (and ":0"); it returns one output per run, so "both outputs" is the two runs together.
  TensorflowPredictMAEST(graphFilename=discogs-maest-10s-pw-seeded-2.pb,
  output="PartitionedCall/Identity_7").
- mirfeat: the facade (`mirfeat.essentia.TensorflowPredictEffnetDiscogs` / `...MAEST`, same
  arguments, .onnx for .pb), and `mirfeat.load_model(onnx)(audio)` (every schema output in one
  run). Essentia has no ONNX runtime, so the bsdynamic rows compare with Essentia's bs64 graph
  (same network and weights).
- Sub-steps: the mel frontend on both sides (Essentia: FrameGenerator + TensorflowInputMusiCNN,
  what its wrappers run), mirfeat's inference alone (`Model.run_patches` on ready bands).

Every job runs in its own subprocess (one algorithm instance or model; Essentia never shares a
process with TensorFlow or onnxruntime), warms up once, then keeps the best of --repeats; its
peak RSS (getrusage) is read after each duration (durations run in increasing order, so a
duration's figure is the peak up to and including it: model load included). The outputs of both
sides on the shortest duration are compared, as a check that both did the same work. --rounds N
runs the whole job list N times and keeps each stage's best: on a shared machine, the quiet
moments. --explore effnet|maest times mirfeat's inference alone under other session settings,
batch sizes and the squeeze-excitation rewrite (applied to graphs converted before it), with
onnxruntime's per-op profile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from timing import Timing, audio_rate, best_of, interleaved, wall_time

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
DEFAULT_MODELS = ROOT / "benchmarks" / "results" / "models"
README = ROOT / "benchmarks" / "README.md"
README_BEGIN = "<!-- bench_effnet_maest: begin -->"
README_END = "<!-- bench_effnet_maest: end -->"
AUDIO_FILE = SHARED / "audio" / "techno_loop.mp3"
SAMPLE_RATE = 16000

EFFNET_BS64 = "discogs-effnet-bs64-seeded-1"
EFFNET_DYNAMIC = "discogs-effnet-bsdynamic-seeded-1"
MAEST_10S = "discogs-maest-10s-pw-seeded-2"
FAMILY_FILES = {
    "effnet": [f"{EFFNET_BS64}.pb", f"{EFFNET_BS64}.onnx", f"{EFFNET_DYNAMIC}.onnx"],
    "maest": [f"{MAEST_10S}.pb", f"{MAEST_10S}.onnx"],
}

# job -> (family, what it runs); the name's prefix is the side. Each job is one subprocess.
JOBS = {
    "essentia-frontend": ("effnet", "FrameGenerator(512, 256) + TensorflowInputMusiCNN"),
    "essentia-effnet-embeddings": ("effnet", "TensorflowPredictEffnetDiscogs(bs64.pb, PartitionedCall:1)"),
    "essentia-effnet-activations": ("effnet", "TensorflowPredictEffnetDiscogs(bs64.pb, PartitionedCall:0)"),
    "mirfeat-frontend": ("effnet", "MUSICNN.compute (numpy)"),
    "mirfeat-bs64-facade-embeddings": ("effnet", "TensorflowPredictEffnetDiscogs(bs64.onnx, PartitionedCall:1)"),
    "mirfeat-bs64-facade-activations": ("effnet", "TensorflowPredictEffnetDiscogs(bs64.onnx, PartitionedCall:0)"),
    "mirfeat-bs64-model": ("effnet", "load_model(bs64.onnx)(audio)"),
    "mirfeat-bsdynamic-facade-embeddings": ("effnet", "TensorflowPredictEffnetDiscogs(bsdynamic.onnx, :1)"),
    "mirfeat-bsdynamic-model": ("effnet", "load_model(bsdynamic.onnx)(audio)"),
    "essentia-maest": ("maest", "TensorflowPredictMAEST(10s.pb, PartitionedCall/Identity_7)"),
    "mirfeat-maest-facade": ("maest", "TensorflowPredictMAEST(10s.onnx, PartitionedCall/Identity_7)"),
    "mirfeat-maest-model": ("maest", "load_model(10s.onnx)(audio)"),
}


# --- workers (one job per process) -------------------------------------------------------------


def tiled(audio: np.ndarray, seconds: int) -> np.ndarray:
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(audio)))
    return np.ascontiguousarray(np.tile(audio, reps)[: seconds * SAMPLE_RATE], dtype=np.float32)


def timing_row(timing: Timing) -> dict:
    """A stage's times as the JSON results keep them."""
    return {"best": timing.best, "median": timing.median, "all": list(timing.times)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def essentia_quiet():
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False  # FrameGenerator warns once per frame
    import essentia.standard as es

    return essentia, es


def worker_decode(out: Path) -> None:
    _, es = essentia_quiet()
    np.save(out, es.MonoLoader(filename=str(AUDIO_FILE), sampleRate=SAMPLE_RATE)())


def make_job(job: str, models: Path):
    """{stage: callable(audio)} for a job, and the library version; the first stage's output on the
    shortest duration is kept for the check."""
    bs64, dynamic, maest = (models / f"{EFFNET_BS64}", models / f"{EFFNET_DYNAMIC}", models / f"{MAEST_10S}")
    if job.startswith("essentia"):
        essentia, es = essentia_quiet()
        version = essentia.__version__
        if job == "essentia-frontend":
            frontend = es.TensorflowInputMusiCNN()

            def bands(x):
                frames = es.FrameGenerator(x, frameSize=512, hopSize=256, startFromZero=False)
                return np.array([frontend(f) for f in frames])

            return {"frontend": bands}, version
        if job == "essentia-maest":
            algorithm = es.TensorflowPredictMAEST(graphFilename=f"{maest}.pb", output="PartitionedCall/Identity_7")
        else:
            output = "PartitionedCall:1" if job.endswith("embeddings") else "PartitionedCall:0"
            algorithm = es.TensorflowPredictEffnetDiscogs(graphFilename=f"{bs64}.pb", output=output)
        return {"end to end": algorithm}, version

    import onnxruntime

    import mirfeat
    from mirfeat import essentia as facade
    from mirfeat.signatures import MUSICNN

    version = f"{mirfeat.__version__} (onnxruntime {onnxruntime.__version__})"
    if job == "mirfeat-frontend":
        return {"frontend": MUSICNN.compute}, version
    if job == "mirfeat-maest-facade":
        predict = facade.TensorflowPredictMAEST(graphFilename=f"{maest}.onnx", output="PartitionedCall/Identity_7")
        return {"end to end": predict}, version
    if "facade" in job:
        graph = bs64 if "bs64" in job else dynamic
        output = "PartitionedCall:1" if job.endswith("embeddings") else "PartitionedCall:0"
        predict = facade.TensorflowPredictEffnetDiscogs(graphFilename=f"{graph}.onnx", output=output)
        return {"end to end": predict}, version
    model = mirfeat.load_model(f"{maest if 'maest' in job else bs64 if 'bs64' in job else dynamic}.onnx")
    outputs = model.output_names
    check_output = "PartitionedCall/Identity_7" if "maest" in job else outputs[-1]
    cache: dict[int, np.ndarray] = {}

    def end_to_end(x):
        return model(x).outputs[check_output]

    def inference(x):  # bands computed once per duration, outside the timing
        if len(x) not in cache:
            cache.clear()
            cache[len(x)] = model.bands(x)
        return model.run_patches(cache[len(x)], outputs)

    return {"end to end": end_to_end, "frontend": model.bands, "inference": inference}, version


def worker_run(job: str, models: Path, audio_path: Path, durations: list[int], repeats: int, check_dir: Path) -> None:
    stages, version = make_job(job, models)
    audio = np.load(audio_path)
    result: dict = {"job": job, "version": version, "durations": {}}
    for seconds in sorted(durations):
        signal = tiled(audio, seconds)
        load_before = os.getloadavg()[0]
        first = next(iter(stages))
        if seconds == min(durations):
            np.save(check_dir / f"{job}.npy", np.asarray(stages[first](signal), dtype=np.float32))
        row = {stage: timing_row(best_of(lambda fn=fn, x=signal: fn(x), repeats)) for stage, fn in stages.items()}
        row["peak_rss_mb"] = peak_rss_mb()
        row["load_before"] = load_before
        row["load_after"] = os.getloadavg()[0]
        result["durations"][str(seconds)] = row
    print(json.dumps(result))


# --- the run ---------------------------------------------------------------------------------


def run_python(args: list[str], what: str) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def ensure_models(models: Path, families: list[str]) -> None:
    for family in families:
        missing = [name for name in FAMILY_FILES[family] if not (models / name).is_file()]
        if missing:
            print(f"building the full-size {family} replicas in {models} ({', '.join(missing)} missing) ...")
            models.mkdir(parents=True, exist_ok=True)
            command = ["-m", "conversion", "build-replicas", "-o", str(models), "--family", family]
            run_python([*command, "--size", "full", "--onnx"], f"building the {family} replicas")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line for line in info.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{cpu}, {os.cpu_count()} cores, {simd}, no GPU"


def rate(seconds: int, t: float | None) -> str:
    return f"{audio_rate(seconds, t):.1f}" if t else "-"


# Table rows: (model, what, Essentia, mirfeat). A side is a job (its "end to end" stage), a
# (job, stage) pair, "both" (Essentia's two EffNet runs, one per output, together) or None.
ROWS = [
    ("EffNet / MAEST", "mel frontend (sub-step)", ("essentia-frontend", "frontend"), ("mirfeat-frontend", "frontend")),
    (
        "EffNet bs64",
        "embeddings (PartitionedCall:1), facade",
        "essentia-effnet-embeddings",
        "mirfeat-bs64-facade-embeddings",
    ),
    (
        "EffNet bs64",
        "activations (PartitionedCall:0), facade",
        "essentia-effnet-activations",
        "mirfeat-bs64-facade-activations",
    ),
    ("EffNet bs64", "both outputs, `load_model(...)(audio)`", "both", "mirfeat-bs64-model"),
    ("EffNet bs64", "mirfeat inference only (bands ready)", None, ("mirfeat-bs64-model", "inference")),
    (
        "EffNet bsdynamic",
        "embeddings, facade (Essentia: bs64 .pb)",
        "essentia-effnet-embeddings",
        "mirfeat-bsdynamic-facade-embeddings",
    ),
    ("EffNet bsdynamic", "both outputs, `load_model` (Essentia: bs64 .pb)", "both", "mirfeat-bsdynamic-model"),
    ("EffNet bsdynamic", "mirfeat inference only (bands ready)", None, ("mirfeat-bsdynamic-model", "inference")),
    ("MAEST 10 s", "Identity_7, facade", "essentia-maest", "mirfeat-maest-facade"),
    ("MAEST 10 s", "3 outputs, `load_model` (Essentia: Identity_7 only)", "essentia-maest", "mirfeat-maest-model"),
    ("MAEST 10 s", "mirfeat inference only (bands ready)", None, ("mirfeat-maest-model", "inference")),
]
ESSENTIA_BOTH = ("essentia-effnet-embeddings", "essentia-effnet-activations")


def table(results: dict[str, dict], durations: list[int]) -> list[str]:
    def row_of(job, seconds):
        return results.get(job, {}).get("durations", {}).get(str(seconds))

    def side(spec, seconds) -> tuple[float | None, str]:
        """(best time, peak RSS) of one side of a row; RSS only for whole end-to-end jobs."""
        if spec is None:
            return None, "-"
        if spec == "both":
            parts = [side(job, seconds) for job in ESSENTIA_BOTH]
            if any(t is None for t, _ in parts):
                return None, "-"
            return sum(t for t, _ in parts), max(r for _, r in parts)
        job, stage = (spec, "end to end") if isinstance(spec, str) else spec
        row = row_of(job, seconds)
        if not row or stage not in row:
            return None, "-"
        dedicated = stage == "end to end" or job.endswith("frontend")  # the process ran this stage only
        rss = f"{row['peak_rss_mb']:.0f}" if dedicated else "-"
        return row[stage]["best"], rss

    lines = [
        "| audio | model | what | Essentia audio-s/s | mirfeat audio-s/s | ratio | Essentia peak RSS MB "
        "| mirfeat peak RSS MB |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for seconds in sorted(durations):
        for model, what, reference, ours in ROWS:
            t_e, rss_e = side(reference, seconds)
            t_m, rss_m = side(ours, seconds)
            if t_m is None:
                continue
            ratio = f"{t_e / t_m:.2f}x" if t_e else "-"
            lines.append(
                f"| {seconds} s | {model} | {what} | {rate(seconds, t_e)} | {rate(seconds, t_m)} | {ratio} "
                f"| {rss_e} | {rss_m} |"
            )
    return lines


CHECKS = [
    ("essentia-effnet-embeddings", "mirfeat-bs64-facade-embeddings"),
    ("essentia-effnet-activations", "mirfeat-bs64-facade-activations"),
    ("essentia-effnet-embeddings", "mirfeat-bsdynamic-facade-embeddings"),
    ("essentia-effnet-embeddings", "mirfeat-bs64-model"),
    ("essentia-maest", "mirfeat-maest-facade"),
    ("essentia-frontend", "mirfeat-frontend"),
]


def checks(check_dir: Path) -> list[str]:
    lines = []
    for reference, ours in CHECKS:
        a, b = check_dir / f"{reference}.npy", check_dir / f"{ours}.npy"
        if a.is_file() and b.is_file():
            x, y = np.load(a), np.load(b)
            if x.shape != y.shape:
                lines.append(f"{ours} vs {reference}: shapes differ, {y.shape} vs {x.shape}")
            else:
                diff, scale = np.abs(x - y).max(), np.abs(x).max()
                lines.append(
                    f"{ours} vs {reference}: shape {x.shape}, max abs diff {diff:.2g} (max |Essentia| {scale:.3g}, "
                    f"relative {diff / scale:.1e})"
                )
    return lines


def merge(old: dict | None, new: dict) -> dict:
    """One job's results over rounds: every time kept, best and median over all, the highest RSS."""
    if old is None:
        return new
    for seconds, row in new["durations"].items():
        kept = old["durations"][seconds]
        for stage, value in row.items():
            if isinstance(value, dict):
                kept[stage] = timing_row(Timing(tuple(kept[stage]["all"] + value["all"])))
        kept["peak_rss_mb"] = max(kept["peak_rss_mb"], row["peak_rss_mb"])
        kept["load_before"] = max(kept["load_before"], row["load_before"])
    return old


def update_readme(block: str) -> None:
    text = README.read_text()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        tail = rest.split(README_END, 1)[1]
        text = f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{README_BEGIN}\n{block}\n{README_END}\n"
    README.write_text(text)


# --- --explore: what limits mirfeat (onnxruntime only, no Essentia) --------------------------------


def explore(models: Path, family: str, repeats: int) -> None:
    import collections
    import json as _json

    import onnx
    import onnxruntime as ort

    import mirfeat
    from conversion.optimize import squeeze_excitation_upsample
    from mirfeat.patches import make_patches

    name = {"effnet": EFFNET_BS64, "maest": MAEST_10S}[family]
    model = mirfeat.load_model(models / f"{name}.onnx")
    audio = worker_audio()
    seconds = 300 if family == "effnet" else 60
    patches = make_patches(model.bands(tiled(audio, seconds)), model.patch_size, model.patch_hop_size)
    if family == "effnet":  # the bs64 graph runs 5 full batches on 300 s (Essentia's "same" last batch)
        patches = np.concatenate([patches, patches])[:320]
    tmp = tempfile.TemporaryDirectory()

    def session(path, threads=2, spin="0", level="ORT_ENABLE_ALL", disabled=(), config=None, profile=False):
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp.name) / "profile")
        return ort.InferenceSession(str(path), options, ["CPUExecutionProvider"], disabled_optimizers=list(disabled))

    def runner(sess, batch):
        feed = sess.get_inputs()[0].name
        return lambda: [sess.run(None, {feed: patches[i : i + batch]}) for i in range(0, len(patches), batch)]

    def profile(path, batch, label):
        sess = session(path, profile=True)
        run = runner(sess, batch)
        for _ in range(3):
            run()
        events = _json.loads(Path(sess.end_profiling()).read_text())
        per_op, convs = collections.Counter(), collections.Counter()
        macs = collections.Counter()
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
                continue
            op = e["args"]["op_name"]
            per_op[op] += e["dur"]
            shapes = [next(iter(t.values())) for t in e["args"].get("input_type_shape", [])]
            if op == "Conv" and len(shapes) >= 2 and len(shapes[1]) == 4:
                x, w = shapes[0], shapes[1]
                out = next(iter(e["args"]["output_type_shape"][0].values()))
                kind = (
                    "stem"
                    if x[1] == 1
                    else "squeeze-excitation"
                    if out[2:] == [1, 1]
                    else "1x1"
                    if w[2:] == [1, 1]
                    else "depthwise"
                )
                convs[kind] += e["dur"]
                macs[kind] += int(np.prod(out)) * w[1] * w[2] * w[3]
        total = sum(per_op.values())
        top = ", ".join(f"{op} {100 * t / total:.0f}%" for op, t in per_op.most_common(8))
        print(f"  profile {label}: {total / 3e6:.3f} s of kernels per {len(patches)} patches: {top}")
        for kind, t in convs.most_common():
            print(f"    Conv {kind}: {100 * t / total:.0f}%, {macs[kind] / (t / 1e6) / 1e9:.0f} GMAC/s")

    variants: dict[str, tuple] = {}  # label -> (session, batch)
    base = models / f"{name}.onnx"
    if family == "effnet":
        dynamic = models / f"{EFFNET_DYNAMIC}.onnx"
        rewritten = {}
        for key, path in (("bs64", base), ("bsdynamic", dynamic)):
            proto = onnx.load(str(path))
            count = squeeze_excitation_upsample(proto)  # a no-op on graphs converted with it
            rewritten[key] = Path(tmp.name) / f"{key}-se.onnx"
            onnx.save(proto, str(rewritten[key]))
        print(f"  SE rewrite: {count} squeeze-excitation products per graph")
        variants["bs64, mirfeat's session (ENABLE_ALL, 2 threads, no spinning)"] = (session(base), 64)
        variants["bs64, 1 thread"] = (session(base, threads=1), 64)
        variants["bs64, spinning on"] = (session(base, spin="1"), 64)
        variants["bs64, ORT_ENABLE_EXTENDED (no NCHWc layout)"] = (session(base, level="ORT_ENABLE_EXTENDED"), 64)
        variants["bs64, ORT_ENABLE_BASIC"] = (session(base, level="ORT_ENABLE_BASIC"), 64)
        variants["bs64, QuickGeluFusion off (Sigmoid + Mul)"] = (session(base, disabled=["QuickGeluFusion"]), 64)
        variants["bs64, denormals as zero"] = (session(base, config={"session.set_denormal_as_zero": "1"}), 64)
        for batch in (64, 32, 16, 8, 1):
            variants[f"bsdynamic, batch {batch}"] = (session(dynamic), batch)
        variants["bs64 + SE rewrite"] = (session(rewritten["bs64"]), 64)
        for batch in (64, 16):
            variants[f"bsdynamic + SE rewrite, batch {batch}"] = (session(rewritten["bsdynamic"]), batch)
        reference = variants["bs64, mirfeat's session (ENABLE_ALL, 2 threads, no spinning)"][0]
        expected = reference.run(None, {reference.get_inputs()[0].name: patches[:64]})
        for key in ("bs64", "bsdynamic"):
            sess = session(rewritten[key])
            got = sess.run(None, {sess.get_inputs()[0].name: patches[:64]})
            diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
            print(f"  {key} + SE rewrite vs bs64 as converted, 64 patches: max abs diff {diff:.3g}")
        profile(base, 64, "bs64 as converted")
        profile(rewritten["bs64"], 64, "bs64 + SE rewrite")
    else:
        variants["batch 1, mirfeat's session (the facade's batch)"] = (session(base), 1)
        variants[f"batch {len(patches)} (load_model's batch 64: all patches at once)"] = (session(base), len(patches))
        variants["batch 2"] = (session(base), 2)
        variants["batch 1, 1 thread"] = (session(base, threads=1), 1)
        variants["batch 1, spinning on"] = (session(base, spin="1"), 1)
        variants["batch 1, ORT_ENABLE_EXTENDED"] = (session(base, level="ORT_ENABLE_EXTENDED"), 1)
        variants["batch 1, ORT_ENABLE_BASIC"] = (session(base, level="ORT_ENABLE_BASIC"), 1)
        variants["batch 1, denormals as zero"] = (session(base, config={"session.set_denormal_as_zero": "1"}), 1)
        profile(base, 1, "batch 1")
        a = np.random.default_rng(0).standard_normal((560, 3072), np.float32)
        b = np.random.default_rng(1).standard_normal((3072, 768), np.float32)
        gemm = best_of(lambda: [a @ b for _ in range(10)], repeats).best / 10
        print(f"  numpy matmul 560x3072 @ 3072x768 (MAEST's fc2): {560 * 3072 * 768 / gemm / 1e9:.0f} GMAC/s")

    # Rounds over all variants, so that a busy moment hits them alike; each warmed up right before
    # it is timed (the other variants' sessions have run since).
    runs = {label: runner(sess, batch) for label, (sess, batch) in variants.items()}
    times = interleaved(runs, repeats, warmup=False, rewarm=True)
    print(f"\n  {family}: inference only, {len(patches)} patches ({seconds} s of audio), best / median of {repeats}")
    for label, t in times.items():
        rate = audio_rate(seconds, t.best)
        print(f"  {label:<62} {t.best:7.3f} s {t.median:7.3f} s  {rate:7.1f} audio-s/s")
    print(f"  load average now {os.getloadavg()[0]:.2f}")


def worker_audio() -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio.npy"
        run_python([__file__, "--worker", "decode", "--audio", str(path)], "decoding the audio")
        return np.load(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the job list this many times and keep each stage's best (busy machines)",
    )
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="replica directory (built if missing)")
    parser.add_argument("--families", nargs="+", choices=["effnet", "maest"], default=["effnet", "maest"])
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), help="run only these jobs")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    parser.add_argument("--update-readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument(
        "--explore", choices=["effnet", "maest"], help="time mirfeat's inference under other settings instead"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--check-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models.resolve()

    if args.worker == "decode":
        return worker_decode(args.audio)
    if args.worker:
        return worker_run(args.worker, models, args.audio, args.durations, args.repeats, args.check_dir)

    if args.explore:
        ensure_models(models, [args.explore])
        return explore(models, args.explore, args.repeats)
    ensure_models(models, args.families)
    tmp = tempfile.TemporaryDirectory()
    audio = Path(tmp.name) / "audio.npy"
    run_python([__file__, "--worker", "decode", "--audio", str(audio)], "decoding the audio")
    jobs = [j for j in (args.jobs or JOBS) if JOBS[j][0] in args.families]
    durations = [str(d) for d in sorted(args.durations)]
    started = datetime.datetime.now()
    load_start = os.getloadavg()
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for job in jobs:
            print(f"  {job}: {JOBS[job][1]} ...", end=" ", flush=True)
            command = [__file__, "--worker", job, "--models", str(models), "--audio", str(audio)]
            command += ["--check-dir", tmp.name, "--repeats", str(args.repeats), "--durations", *durations]
            elapsed, stdout = wall_time(lambda command=command, job=job: run_python(command, job))
            result = json.loads(stdout.strip().splitlines()[-1])
            results[job] = merge(results.get(job), result)
            loads = [row["load_before"] for row in result["durations"].values()]
            print(f"{elapsed:.0f} s (load {max(loads):.2f})", flush=True)

    versions = {j.split("-")[0]: r["version"] for j, r in results.items()}
    header = (
        f"{started:%Y-%m-%d}, {machine()}; Essentia {versions.get('essentia', '?')}, mirfeat "
        f"{versions.get('mirfeat', '?')}; load average {load_start[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end; best of {args.repeats} after one warm-up"
        + (f", in each of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    lines = [header, "", *table(results, args.durations)]
    check_lines = checks(Path(tmp.name))
    print("\n" + "\n".join(lines))
    print(f"\nchecks, {min(args.durations)} s outputs (same patches on both sides):\n  " + "\n  ".join(check_lines))
    print("\n(audio-seconds per second of wall time; ratio = Essentia time / mirfeat time)")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "results": results, "checks": check_lines}, indent=1))
    if args.update_readme:
        update_readme("\n".join(lines))
        print(f"wrote the table into {README}")


if __name__ == "__main__":
    main()
