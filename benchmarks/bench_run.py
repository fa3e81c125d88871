"""`mirfeat run` throughput: many short clips against one long file, --jobs 1 against 2, and the
Ray engine against the local engine.

    python benchmarks/bench_run.py [--clips 1000] [--repeat 1] [--model msd-musicnn-1] [--workdir DIR] [--ray]

Writes --clips clips of 5-30 s (random lengths, seeded; 16 kHz mono WAV, cut from the shared
recordings looped) and one long file of the same total duration, then times `mirfeat.run` (the
library path: decode, bands and patch inputs in worker threads, cross-file batching; no arrays
written) over each with --jobs 1 and 2. Three figures:

1. clips / one long file, in audio-seconds per second (the goal: at least 0.90);
2. --jobs 2 / --jobs 1 on each input;
3. with --ray, the Ray engine (`mirfeat.ray_engine.run`: a local Ray cluster on this machine's cores,
   one model actor per spare core, the same OUTDIR written, no arrays) on the same clips / the local
   engine with --jobs 2: what Ray costs on one machine. Ray's start-up is timed apart, not counted.

Each time is the best of --repeat runs. Check it with a few clips (--clips 20); the full figures take
--clips 1000 on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import soundfile
from timing import audio_rate, best_of, wall_time

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


def local_run(inputs: list[Path], model: str, out: Path, jobs: int) -> None:
    """The local engine over `inputs`, afresh (resume=False: out's journal is cleared first)."""
    for item in mirfeat.run(inputs, [model], out, jobs=jobs, arrays=False, resume=False, progress=False):
        if not isinstance(item, mirfeat.FileResult):
            raise RuntimeError(item.error)


def ray_run(inputs: list[Path], model: str, out: Path) -> None:
    """The Ray engine over `inputs`, afresh (Ray already started)."""
    from mirfeat import ray_engine

    cpus = os.cpu_count() or 1
    settings = ray_engine.RaySettings(concurrency=max(1, cpus - 1))
    for item in ray_engine.run(inputs, [model], out, settings, arrays=False, resume=False, progress=False):
        if isinstance(item, mirfeat.FileFailure):
            raise RuntimeError(item.error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000, help="how many clips of 5-30 s (default 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs (default 1)")
    parser.add_argument("--model", default="msd-musicnn-1")
    parser.add_argument("--workdir", type=Path, help="where the audio goes (default: a temporary folder)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine on the clips (ray extra)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mirfeat-bench-run-"))
    clips, long_file, total = write_library(workdir, args.clips)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.clips} clips, {total:.0f} s of audio in all; {args.model}; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}; load average {load:.2f} at the start; best of {args.repeat}"
    )
    print("| input | engine | jobs | seconds | audio-s/s | clips / long file | jobs 2 / jobs 1 |")
    print("|---|---|---|---|---|---|---|")
    times: dict[tuple[str, int], float] = {}
    for jobs in (1, 2):  # no warm-up: each run loads the model, as `mirfeat run` does
        for kind, inputs in (("long", [long_file]), ("clips", clips)):
            run = partial(local_run, inputs, args.model, workdir / "out", jobs)
            times[kind, jobs] = best_of(run, args.repeat, warmup=False).best
    for jobs in (1, 2):
        for kind, label in (("long", "one long file"), ("clips", f"{args.clips} clips of 5-30 s")):
            seconds = times[kind, jobs]
            ratio = times["long", jobs] / seconds
            speedup = f"{times[kind, 1] / seconds:.2f}" if jobs == 2 else "-"
            rate = audio_rate(total, seconds)
            print(f"| {label} | local | {jobs} | {seconds:.1f} | {rate:.0f} | {ratio:.2f} | {speedup} |")
    if args.ray:
        import ray

        startup, _ = wall_time(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False))
        ray_time = best_of(partial(ray_run, clips, args.model, workdir / "out-ray"), args.repeat, warmup=False).best
        ray.shutdown()
        print(
            f"| {args.clips} clips of 5-30 s | Ray (local cluster, {max(1, (os.cpu_count() or 1) - 1)} actor(s)) | - | "
            f"{ray_time:.1f} | {audio_rate(total, ray_time):.0f} | - | - |"
        )
        print(
            f"\nRay engine / local engine (jobs 2) on the clips: {times['clips', 2] / ray_time:.2f}x the throughput; "
            f"Ray start-up {startup:.1f} s, not counted."
        )
    ratio = times["long", 2] / times["clips", 2]
    print(f"Clips / one long file, jobs 2: {ratio:.2f} ({'meets' if ratio >= 0.9 else 'misses'} the 0.90 goal).")


if __name__ == "__main__":
    main()
