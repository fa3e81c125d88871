"""Peak memory of `mirfeat tag` on long files: 10 minutes against 60 minutes of 44.1 kHz stereo.

    python benchmarks/bench_memory.py [--minutes 10 60] [--model msd-musicnn-1] [--workdir DIR]

Writes each file (16-bit WAV, music looped from the shared recordings), runs `mirfeat tag` on it in
a fresh process and reads that process's peak resident memory (VmHWM) as it exits. Streaming
decode, bands, patches and batches keep it flat: the goal is under 500 MB at 60 minutes, within
15% of the 10-minute figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from timing import audio_rate, wall_time

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
RATE = 44100

# Runs `mirfeat tag FILE`, then prints the process's peak resident memory in kB.
CHILD = """
import sys
from mirfeat.cli import main
code = main(["tag", sys.argv[1], "--top", "1"])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK", peak.split()[1], file=sys.stderr)
sys.exit(code)
"""


def write_long_wav(path: Path, minutes: float) -> None:
    """Stereo 16-bit WAV of `minutes`, written block by block (the writer keeps no copy)."""
    import wave

    import mirfeat

    music = mirfeat.load_audio(SHARED / "audio" / "techno_loop.mp3", RATE)
    stereo = np.stack([music, 0.8 * music[::-1]], axis=1)
    pcm = (np.clip(stereo, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    frames = int(minutes * 60 * RATE)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(RATE)
        written = 0
        while written < frames:
            n = min(len(music), frames - written)
            f.writeframes(pcm[: n * 4])
            written += n


def peak_memory(path: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of `mirfeat tag path` in a fresh process."""
    command = [sys.executable, "-c", CHILD, str(path)]
    seconds, proc = wall_time(lambda: subprocess.run(command, capture_output=True, text=True, check=True))
    kb = int(next(line for line in proc.stderr.splitlines() if line.startswith("PEAK")).split()[1])
    return kb / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mirfeat-bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print("| audio | file size | peak RSS | time | audio-s/s |")
    print("|---|---|---|---|---|")
    for minutes in args.minutes:
        path = workdir / f"long-{minutes:g}min.wav"
        if not path.is_file():
            write_long_wav(path, minutes)
        mb, seconds = peak_memory(path)
        size = path.stat().st_size / 2**20
        rate = audio_rate(minutes * 60, seconds)
        print(f"| {minutes:g} min, 44.1 kHz stereo | {size:.0f} MB | {mb:.0f} MB | {seconds:.0f} s | {rate:.0f} |")


if __name__ == "__main__":
    main()
