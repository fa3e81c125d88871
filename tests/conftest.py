"""Shared fixtures: paths to the shared test data, and reference graphs built once per session.

Conversion and graph building run in subprocesses: the Essentia oracle (essentia-tensorflow)
bundles its own libtensorflow, which must not meet Python TensorFlow in one process.

Tiers (markers, registered in pyproject.toml and added here from the fixtures a test uses):
`essentia` (the oracle), `tensorflow` (Python TensorFlow: conversion, graph building), `slow`,
`shared` (reads ../shared) and `fast` (none of essentia / tensorflow / slow): `pytest -m fast`.
`cuda` is set by the tests themselves (onnxruntime-gpu's CUDA provider and a GPU: `pytest -m cuda`).
A test whose needs are missing here (no essentia, no tensorflow, no shared data, no CUDA provider)
is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
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


# What a test needs, read from its fixture closure (the fixtures it uses, directly or through
# other fixtures). A fixture added later (here or in a test module) joins by appending its name,
# e.g. `TENSORFLOW_FIXTURES.append("my_graph")` below its definition; the lists are read at collection.
ESSENTIA_FIXTURES = ["es"]  # -> essentia
# Build or convert graphs with Python TensorFlow in a subprocess, once per session -> tensorflow (and slow).
TENSORFLOW_FIXTURES = [
    "model_dir",
    "genre_dortmund",
    "identity_pb",
    "vggish_dir",
    "small_vggish",
    "identity_vggish_pb",
    "patches_2d_pb",
]
SLOW_FIXTURES: list[str] = []  # other fixtures that take more than a few seconds -> slow
# A test (or one of its fixtures) whose code names one of these reads ../shared -> shared.
SHARED_NAMES = {"SHARED", "AUDIO_DIR", "AUDIO_FILES", "ESSENTIA_MODELS"}
SHARED_PRESENT = AUDIO_DIR.is_dir() and ESSENTIA_MODELS.is_dir()


def _installed(module: str) -> bool:
    """Importable here, without importing it (essentia and tensorflow must not share a process)."""
    return importlib.util.find_spec(module) is not None


def _cuda_provider() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _code_names(code: types.CodeType) -> set[str]:
    """Global and attribute names a function's code uses, nested functions and lambdas included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _reads_shared_data(item: pytest.Item) -> bool:
    functions = [getattr(item, "function", None)]
    name2fixturedefs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    functions += [defs[-1].func for defs in name2fixturedefs.values() if defs]
    return any(SHARED_NAMES & _code_names(f.__code__) for f in functions if hasattr(f, "__code__"))


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = {
        "essentia": None if _installed("essentia") else "essentia-tensorflow (the oracle) is not installed",
        "tensorflow": None
        if _installed("tensorflow") and _installed("tf2onnx")
        else "TensorFlow / tf2onnx (the convert extra) are not installed",
        "shared": None if SHARED_PRESENT else f"shared test data not found at {SHARED} (set MIRFEAT_SHARED)",
        "cuda": None if _cuda_provider() else "onnxruntime has no CUDA provider (onnxruntime-gpu on a GPU machine)",
    }
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & set(ESSENTIA_FIXTURES):
            item.add_marker(pytest.mark.essentia)
        if fixtures & set(TENSORFLOW_FIXTURES):
            item.add_marker(pytest.mark.tensorflow)
        # A TensorFlow process takes 3 s to start at best: every tensorflow test is slow too.
        if item.get_closest_marker("tensorflow") or fixtures & set(SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("shared") is None and _reads_shared_data(item):
            item.add_marker(pytest.mark.shared)
        if not any(item.get_closest_marker(m) for m in ("essentia", "tensorflow", "slow")):
            item.add_marker(pytest.mark.fast)
        for marker, reason in missing.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def es():
    """essentia.standard, quiet."""
    essentia = pytest.importorskip("essentia", reason="essentia-tensorflow (the oracle) is not installed")

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


def build_test_graph(tmp_path_factory, kind: str, name: str, convert: bool = True) -> Path:
    """`tests/tf_graphs.py KIND` written as NAME.pb in a fresh folder (and converted to NAME.onnx
    beside it), each in its own process."""
    path = tmp_path_factory.mktemp(kind.replace("-", "_")) / f"{name}.pb"
    run_python(str(ROOT / "tests" / "tf_graphs.py"), kind, str(path))
    if convert:
        run_python("-m", "conversion", "convert", str(path), "-o", str(path.with_suffix(".onnx")))
    return path


@pytest.fixture(scope="session")
def patches_2d_pb(tmp_path_factory) -> Path:
    """[B, 4, 128] patches of embedding rows -> `model/Flatten` [B, 512], and its .onnx beside it."""
    return build_test_graph(tmp_path_factory, "patches-2d", "patches_2d")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """A 16-bit PCM WAV with the standard library (the fast tier needs no soundfile)."""
    import wave

    pcm = np.clip(np.asarray(samples, np.float32), -1.0, 32767 / 32768) * 32768
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.astype("<i2").tobytes())
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


@pytest.fixture(scope="session")
def identity_effnet(tmp_path_factory) -> Path:
    """EffNet-Discogs' tensor names on an identity graph with the bs64 batch: `identity.pb` and its
    conversion `identity.onnx` (batch fixed at 64) side by side."""
    return build_test_graph(tmp_path_factory, "identity-effnet", "identity")


TENSORFLOW_FIXTURES.append("identity_effnet")


@pytest.fixture(scope="session")
def identity_maest(tmp_path_factory) -> Path:
    """MAEST's tensor names on an identity graph of any patch length, under each of the file names
    Essentia's wrapper reads the patch size from: {"30s": path, "20s": ..., "10s": ..., "5s": ...},
    each .pb with its .onnx beside it."""
    out = tmp_path_factory.mktemp("identity_maest")
    pb = out / "identity-discogs-maest-30s-pw-1.pb"
    run_python(str(ROOT / "tests" / "tf_graphs.py"), "identity-maest", str(pb))
    run_python("-m", "conversion", "convert", str(pb), "-o", str(pb.with_suffix(".onnx")))
    paths = {"30s": pb}
    for length in ("20s", "10s", "5s"):
        paths[length] = out / pb.name.replace("30s", length)
        for suffix in (".pb", ".onnx", ".json"):
            paths[length].with_suffix(suffix).write_bytes(pb.with_suffix(suffix).read_bytes())
    return paths


TENSORFLOW_FIXTURES.append("identity_maest")


@pytest.fixture(scope="session")
def deeptemp(tmp_path_factory) -> Path:
    """The shared TempoCNN graph deeptemp_k16 converted from the graph alone (no JSON beside it)."""
    out = tmp_path_factory.mktemp("deeptemp") / "deeptemp_k16.onnx"
    run_python("-m", "conversion", "convert", str(ESSENTIA_MODELS / "tempocnn" / "deeptemp_k16.pb"), "-o", str(out))
    return out


TENSORFLOW_FIXTURES.append("deeptemp")


@pytest.fixture(scope="session")
def crepe_tiny(tmp_path_factory) -> Path:
    """The shared CREPE graph crepe-tiny-1 converted from the graph alone (no JSON beside it)."""
    out = tmp_path_factory.mktemp("crepe") / "crepe-tiny-1.onnx"
    run_python("-m", "conversion", "convert", str(ESSENTIA_MODELS / "crepe" / "crepe-tiny-1.pb"), "-o", str(out))
    return out


TENSORFLOW_FIXTURES.append("crepe_tiny")


def _build_replicas(tmp_path_factory, family: str) -> Path:
    """`python -m conversion build-replicas --family FAMILY --size small --onnx` into a fresh directory."""
    out = tmp_path_factory.mktemp(f"replicas_{family}")
    run_python("-m", "conversion", "build-replicas", "-o", str(out), "--family", family, "--size", "small", "--onnx")
    return out


@pytest.fixture(scope="session")
def effnet_dir(tmp_path_factory) -> Path:
    """Small seeded EffNet-Discogs replicas (conversion/replicas.py), each .pb with .onnx and .json:
    discogs-effnet-bs64-small-seeded-1 (fixed batch 64, kept in the ONNX), the heads
    genre_discogs400-discogs-effnet-small-seeded-1 (TF2 style) and
    danceability-discogs-effnet-small-seeded-1 (model/Placeholder style), and the published-style
    discogs-effnet-bsdynamic-small-seeded-1.onnx/.json (melspectrogram -> activations, embeddings).
    About 11 s."""
    return _build_replicas(tmp_path_factory, "effnet")


@pytest.fixture(scope="session")
def maest_dir(tmp_path_factory) -> Path:
    """Small seeded MAEST replicas discogs-maest-{5,10,20,30}s-pw-small-seeded-2 (.pb, .onnx, .json):
    width 32, 12 blocks. About 19 s."""
    return _build_replicas(tmp_path_factory, "maest")


@pytest.fixture(scope="session")
def yamnet_dir(tmp_path_factory) -> Path:
    """Small seeded YAMNet replica audioset-yamnet-small-seeded-1 and its head
    danceability-audioset-yamnet-small-seeded-1 (.pb, .onnx, .json). About 6 s."""
    return _build_replicas(tmp_path_factory, "yamnet")


TENSORFLOW_FIXTURES.extend(["effnet_dir", "maest_dir", "yamnet_dir"])


@pytest.fixture(scope="session")
def identity_tempocnn(tmp_path_factory) -> Path:
    """TempoCNN's tensor names and [B, 40, 256, 1] layout on an identity graph (.pb, .onnx beside it)."""
    return build_test_graph(tmp_path_factory, "identity-tempocnn", "identity")


TENSORFLOW_FIXTURES.append("identity_tempocnn")


@pytest.fixture(scope="session")
def fsdsinet_dir(tmp_path_factory) -> Path:
    """Small seeded FSD-SINet replica fsd-sinet-vgg42-tlpf-small-seeded-1 (.pb, .onnx, .json). About 9 s."""
    return _build_replicas(tmp_path_factory, "fsdsinet")


@pytest.fixture(scope="session")
def identity_fsdsinet(tmp_path_factory) -> Path:
    """FSD-SINet's tensor names and [B, 101, 96, 1] layout on a graph that returns each patch
    flattened (`identity.pb`, for Essentia only)."""
    return build_test_graph(tmp_path_factory, "identity-fsdsinet", "identity", convert=False)


TENSORFLOW_FIXTURES.extend(["fsdsinet_dir", "identity_fsdsinet"])
