"""Write examples/demo.flac: 12 s of synthesised four-on-the-floor electronic music (kick, hi-hat,
bass line, chord stabs) at 22050 Hz, so that the README's first command has a file to tag on a
machine with nothing but the repository. Deterministic: `python examples/make_demo.py`."""

from pathlib import Path

import numpy as np
import soundfile

RATE = 22050
BPM = 124
SECONDS = 12.0


def envelope(n: int, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * RATE))


def render() -> np.ndarray:
    rng = np.random.default_rng(2024)
    out = np.zeros(int(SECONDS * RATE))
    beat = int(60 / BPM * RATE)
    t_kick = np.arange(int(0.25 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (45 * t_kick + 90 * (1 - np.exp(-t_kick * 30)) / 30)) * envelope(len(t_kick), 0.09)
    hat = rng.standard_normal(int(0.05 * RATE)) * envelope(int(0.05 * RATE), 0.01)
    hat = np.diff(hat, prepend=0.0)  # brighter
    bass_notes = [41.2, 41.2, 49.0, 55.0]  # E1 E1 G1 A1
    chord = [329.6, 392.0, 493.9]  # E minor stab
    for i, start in enumerate(range(0, len(out) - beat, beat)):
        out[start : start + len(kick)] += 0.9 * kick[: len(out) - start]
        off = start + beat // 2
        out[off : off + len(hat)] += 0.25 * hat[: len(out) - off]
        t = np.arange(beat // 2) / RATE
        note = bass_notes[(i // 4) % len(bass_notes)] * 2
        saw = 2 * ((t * note) % 1.0) - 1
        out[off : off + len(t)] += 0.3 * saw * envelope(len(t), 0.12)
        if i % 2 == 1:
            stab = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in chord) / len(chord)
            out[start : start + len(t)] += 0.15 * stab * envelope(len(t), 0.06)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


if __name__ == "__main__":
    path = Path(__file__).with_name("demo.flac")
    soundfile.write(path, render(), RATE, subtype="PCM_16")
    print(f"wrote {path}")
