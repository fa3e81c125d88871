"""`mirfeat run` throughput: many short clips against one long file, and worker threads.

    python benchmarks/bench_run.py [--clips 1000] [--model msd-musicnn-1] [--workdir DIR] [--ray]

Writes --clips clips of 5-30 s (random lengths, 16 kHz mono WAV, cut from the shared recordings)
and one long file of the same total duration, then times `mirfeat.run` over each (the library
path: decode, bands and patch inputs in worker threads, cross-file batching) with --jobs 1 and 2.
Reports audio-seconds per second and the clips / long-file ratio (the goal is at least 0.9).
--ray also times the Ray engine (`mirfeat.ray_engine`, a local Ray cluster on this machine's cores,
one model actor, Parquet written) on the same clips against the local engine with --jobs 2: what
Ray costs on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

import mirfeat

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
RATE = 16000


def source_audio() -> np.ndarray:
    parts = [
        mirfeat.load_audio(SHARED / "audio" / name, RATE)
        for name in ("techno_loop.mp3", "dubstep.flac", "359628__mtg__sax-tenor-d-minor.wav")
    ]
    return np.concatenate(parts)


def write_library(folder: Path, clips: int, seed: int = 0) -> tuple[list[Path], Path, float]:
    """`clips` clips of 5-30 s and one long file as long as all of them together."""
    audio = source_audio()
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(5, 30, clips)
    total = float(lengths.sum())
    looped = np.tile(audio, int(np.ceil(total * RATE / len(audio))) + 1)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for i, seconds in enumerate(lengths):
        n = int(seconds * RATE)
        path = folder / "clips" / f"clip{i:05d}.wav"
        soundfile.write(path, looped[start : start + n], RATE, subtype="PCM_16")
        paths.append(path)
        start += n
    long_file = folder / "long.wav"
    soundfile.write(long_file, looped[: int(total * RATE)], RATE, subtype="PCM_16")
    return paths, long_file, total


def timed_run(inputs: list[Path], model: str, out: Path, jobs: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    for item in mirfeat.run(inputs, [model], out, jobs=jobs, arrays=False, progress=False):
        if not isinstance(item, mirfeat.FileResult):
            raise RuntimeError(item.error)
    return time.perf_counter() - start


def timed_ray_run(inputs: list[Path], model: str, out: Path) -> tuple[float, float]:
    """Seconds for the Ray engine over `inputs` (cluster already started), and Ray's start-up."""
    import ray

    from mirfeat import ray_engine

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    failures = ray_engine.run(inputs, [model], out)
    elapsed = time.perf_counter() - start
    ray.shutdown()
    if failures:
        raise RuntimeError(failures[0]["error"])
    return elapsed, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--model", default="msd-musicnn-1")
    parser.add_argument("--workdir", type=Path, help="where the audio goes (default: a temporary folder)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine on the clips (ray extra)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mirfeat-bench-run-"))
    clips, long_file, total = write_library(workdir, args.clips)
    print(f"{args.clips} clips, {total:.0f} s of audio in all; {os.cpu_count()} cores, {platform.processor()}")
    print("| input | jobs | seconds | audio-s/s | vs one long file |")
    print("|---|---|---|---|---|")
    for jobs in (1, 2):
        long_time = timed_run([long_file], args.model, workdir / "out-long", jobs)
        clip_time = timed_run(clips, args.model, workdir / "out-clips", jobs)
        print(f"| one long file | {jobs} | {long_time:.1f} | {total / long_time:.0f} | 1.00 |")
        print(
            f"| {args.clips} clips of 5-30 s | {jobs} | {clip_time:.1f} | {total / clip_time:.0f} | "
            f"{long_time / clip_time:.2f} |"
        )
    if args.ray:
        ray_time, startup = timed_ray_run(clips, args.model, workdir / "out-ray")
        print(
            f"| {args.clips} clips, Ray engine (1 actor; Ray start-up {startup:.1f} s not counted) | - | "
            f"{ray_time:.1f} | {total / ray_time:.0f} | {clip_time / ray_time:.2f} vs local clips, jobs 2 |"
        )


if __name__ == "__main__":
    main()
