"""Shared fixtures: paths to the shared test data, and reference graphs built once per session.

Conversion and graph building run in subprocesses: the Essentia oracle (essentia-tensorflow)
bundles its own libtensorflow, which must not meet Python TensorFlow in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIRFEAT_SHARED", ROOT.parent / "shared"))
AUDIO_DIR = SHARED / "audio"
ESSENTIA_MODELS = SHARED / "essentia-models"
AUDIO_FILES = sorted(p for p in AUDIO_DIR.glob("*") if p.suffix in (".wav", ".flac", ".mp3", ".ogg"))
MUSICNN_MODELS = ["msd-musicnn-1", "mtt-musicnn-1", "msd-vgg-1", "mtt-vgg-1"]
GENRE_DORTMUND_CLASSES = [
    "alternative",
    "blues",
    "electronic",
    "folkcountry",
    "funksoulrnb",
    "jazz",
    "pop",
    "raphiphop",
    "rock",
]


def run_python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python ARGS...` in a fresh process; fail the test with its output on a non-zero exit."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        pytest.fail(f"python {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def _shared_data_present():
    if not AUDIO_DIR.is_dir() or not ESSENTIA_MODELS.is_dir():
        pytest.exit(f"shared test data not found at {SHARED} (set MIRFEAT_SHARED)", returncode=4)


@pytest.fixture(scope="session")
def es():
    """essentia.standard, quiet."""
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard

    return essentia.standard


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """Frozen musicnn-wheel graphs (.pb, what Essentia runs) and their ONNX conversions."""
    out = tmp_path_factory.mktemp("models")
    run_python("-m", "conversion", "freeze-musicnn", *MUSICNN_MODELS, "-o", str(out), "--onnx")
    return out


@pytest.fixture(scope="session")
def genre_dortmund(tmp_path_factory) -> Path:
    """The shared genre_dortmund graph converted from the graph alone (no JSON beside it)."""
    out = tmp_path_factory.mktemp("dortmund") / "genre_dortmund_musicnn_msd.onnx"
    run_python(
        "-m",
        "conversion",
        "convert",
        str(ESSENTIA_MODELS / "musicnn" / out.with_suffix(".pb").name),
        "-o",
        str(out),
    )
    return out


@pytest.fixture(scope="session")
def identity_pb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("identity") / "identity.pb"
    run_python(str(ROOT / "tests" / "tf_graphs.py"), "identity", str(path))
    return path


def essentia_load(es, path: Path, sample_rate: int = 16000) -> np.ndarray:
    return es.MonoLoader(filename=str(path), sampleRate=sample_rate)()


def essentia_frames(es, signal: np.ndarray, frame_size: int, hop_size: int):
    """Essentia's frame cutting as its TensorflowPredict* wrappers configure it (centred frames)."""
    return es.FrameGenerator(
        signal,
        frameSize=frame_size,
        hopSize=hop_size,
        startFromZero=False,
        validFrameThresholdRatio=0,
        lastFrameToEndOfFile=False,
    )


def essentia_filterbank(es, n_bands: int, f_min: float, f_max: float, **melbands) -> np.ndarray:
    """Essentia's MelBands weights at 16 kHz over a 512-point FFT as a [257, n_bands] matrix."""
    algorithm = es.MelBands(
        inputSize=257,
        numberBands=n_bands,
        sampleRate=16000,
        lowFrequencyBound=f_min,
        highFrequencyBound=f_max,
        type="magnitude",
        **melbands,
    )
    return np.array([algorithm(row) for row in np.eye(257, dtype=np.float32)]).T


def synthetic_signals(sample_rate: int = 16000) -> dict[str, np.ndarray]:
    """Signals that stress the frontend: tones, noise, chirp, clicks, silence gaps, odd lengths."""
    rng = np.random.default_rng(7)
    t = np.arange(int(2.3 * sample_rate) + 77) / sample_rate
    chirp = np.sin(2 * np.pi * (50 * t + (7900 - 50) / (2 * t[-1]) * t**2))
    clicks = np.zeros(sample_rate + 129)
    clicks[:: sample_rate // 10] = 1.0
    gap = np.concatenate([rng.standard_normal(5000) * 0.1, np.zeros(9000), rng.standard_normal(7001) * 0.5])
    return {
        "sine_440": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "white_noise": (0.3 * rng.standard_normal(len(t))).astype(np.float32),
        "chirp": (0.8 * chirp).astype(np.float32),
        "clicks": clicks.astype(np.float32),
        "noise_silence_noise": gap.astype(np.float32),
        "full_scale_square": np.sign(np.sin(2 * np.pi * 1000 * t[:40001])).astype(np.float32),
        "tiny_300": (0.2 * rng.standard_normal(300)).astype(np.float32),
        "digital_silence": np.zeros(20000, dtype=np.float32),
    }


@pytest.fixture(scope="session")
def vggish_dir(tmp_path_factory) -> Path:
    """Seeded full-size VGGish, its two-class classifier and two heads (.pb + .onnx + .json)."""
    out = tmp_path_factory.mktemp("vggish")
    run_python("-m", "conversion", "build-test-models", "-o", str(out), "--heads", "2", "--onnx")
    return out


@pytest.fixture(scope="session")
def small_vggish(tmp_path_factory) -> Path:
    """The shared small_vggish_init graph converted from the graph alone."""
    out = tmp_path_factory.mktemp("small_vggish") / "small_vggish_init.onnx"
    run_python("-m", "conversion", "convert", str(ESSENTIA_MODELS / "vggish" / "small_vggish_init.pb"), "-o", str(out))
    return out


@pytest.fixture(scope="session")
def identity_vggish_pb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("identity_vggish") / "identity.pb"
    run_python(str(ROOT / "tests" / "tf_graphs.py"), "identity-vggish", str(path))
    return path
