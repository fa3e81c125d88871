"""The GPU code paths, run where no GPU is: I/O binding through the CPU provider, device selection
and its errors, batch_size="auto" (the search with a fake clock, and one real run), fp16 variants."""

from __future__ import annotations

import logging
import shutil
import threading
import warnings

import numpy as np
import pytest

import mirfeat
from mirfeat.cli import main
from mirfeat.errors import DeviceError, ModelError
from mirfeat.model import BUNDLED_DIR, Model, load_model
from mirfeat.runtime import RunOptions, Session, cuda_available, resolve_device, search_batch_size

MUSICNN = BUNDLED_DIR / "msd-musicnn-1.onnx"
no_cuda = pytest.mark.skipif(cuda_available(), reason="onnxruntime here has the CUDA provider")


def signal(seconds: float = 12.0, sample_rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    noise = 0.1 * np.random.default_rng(1).standard_normal(len(t))
    return (0.4 * np.sin(2 * np.pi * 440 * t * (1 + t / seconds)) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((21, 187, 96)).astype(np.float32)


# --- I/O binding through the CPU provider -------------------------------------------------------


def test_io_binding_equals_plain_runs_exactly(patches):
    plain, bound = Session(MUSICNN), Session(MUSICNN, RunOptions(io_binding=True))
    assert bound.io_binding and not plain.io_binding  # on the CPU only when asked for
    outputs = plain.output_names
    expected = plain.run(patches, outputs, batch_size=8)
    got = bound.run(patches, outputs, batch_size=8)  # 8, 8 and a last batch of 5: two shapes
    for name in outputs:
        np.testing.assert_array_equal(got[name], expected[name])


def test_io_binding_reuses_buffers_and_returns_copies(patches):
    session = Session(MUSICNN, RunOptions(io_binding=True))
    name, out = session.input_names[0], session.output_names[:1]
    first = session.run_once(out, {name: patches[:8]})[0]
    kept = first.copy()
    second = session.run_once(out, {name: patches[8:16]})[0]
    assert session._bound is not None and len(session._bound._buffers) == 1  # one shape: one set of buffers
    np.testing.assert_array_equal(first, kept)  # the second run wrote into the buffers, not into `first`
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, Session(MUSICNN).run_once(out, {name: patches[8:16]})[0])


def test_io_binding_from_several_threads(patches):
    """The runner's workers run the frame-sharing graph at once: each thread has its own buffers."""
    session, plain = Session(MUSICNN, RunOptions(io_binding=True, threads=1)), Session(MUSICNN)
    name, out = session.input_names[0], session.output_names
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = session.run_once(out, {name: patches[i * 4 : i * 4 + 4]})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in results.items():
        for value, expected in zip(got, plain.run_once(out, {name: patches[i * 4 : i * 4 + 4]}), strict=True):
            np.testing.assert_array_equal(value, expected)


def test_model_with_io_binding_equals_plain_model():
    """The whole model, frame sharing included (its per-frame graph runs on varying shapes)."""
    audio = signal()
    plain = load_model(MUSICNN)
    bound = load_model(MUSICNN, options=RunOptions(io_binding=True))
    assert isinstance(bound, Model) and bound.frame_sharing is not None
    assert bound.frame_sharing.frames.io_binding and bound.frame_sharing.rest.io_binding
    expected, got = plain(audio), bound(audio)
    for name in expected.outputs:
        np.testing.assert_array_equal(got.outputs[name], expected.outputs[name])


# --- device selection ---------------------------------------------------------------------------


@no_cuda
def test_cuda_without_the_provider_is_a_clear_error():
    with pytest.raises(DeviceError, match="onnxruntime-gpu") as caught:
        load_model(MUSICNN, device="cuda")
    assert isinstance(caught.value, mirfeat.MirfeatError) and isinstance(caught.value, RuntimeError)


@no_cuda
def test_cli_cuda_without_the_provider(tmp_path, capsys):
    assert main(["tag", str(tmp_path / "x.wav"), "--device", "cuda"]) == 2
    assert "pip install 'onnxruntime-gpu[cuda,cudnn]'" in capsys.readouterr().err


@no_cuda
def test_auto_device_falls_back_to_the_cpu_quietly(caplog):
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        model = load_model(MUSICNN, device="auto")
    assert resolve_device("auto") == "cpu" and model.graph.session.device == "cpu"
    assert not model.graph.session.io_binding
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@no_cuda
def test_cuda_provider_that_does_not_load(monkeypatch):
    """onnxruntime-gpu whose CUDA provider cannot load (no CUDA libraries) runs on the CPU with a log
    line only: device="cuda" says so, device="auto" takes the CPU. Simulated: this onnxruntime
    lists no CUDA provider, and a session asked for one falls back to the CPU the same way."""
    import mirfeat.runtime as runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime warns that it has no CUDA provider
        with pytest.raises(DeviceError, match="CUDA provider did not load"):
            Session(MUSICNN, RunOptions(device="cuda"))
        assert Session(MUSICNN, RunOptions(device="auto")).device == "cpu"


def test_cuda_provider_that_fails_on_the_model(monkeypatch):
    """onnxruntime-gpu on a machine without a GPU raises when the session opens: a DeviceError for
    device="cuda", the CPU for "auto", and still a ModelError for a file that is no model."""
    import mirfeat.runtime as runtime

    real = runtime.ort.InferenceSession

    def session(path, options, providers):
        if "CUDAExecutionProvider" in providers:
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real(path, options, providers=providers)

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(runtime.ort, "InferenceSession", session)
    with pytest.raises(DeviceError, match="no CUDA-capable device"):
        Session(MUSICNN, RunOptions(device="cuda"))
    assert Session(MUSICNN, RunOptions(device="auto")).device == "cpu"
    not_a_model = BUNDLED_DIR / "msd-musicnn-1.json"
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        Session(not_a_model, RunOptions(device="cuda"))


def test_run_options_are_checked():
    with pytest.raises(ValueError, match="precision"):
        RunOptions(precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        RunOptions(batch_size="big")
    with pytest.raises(ValueError, match="device"):
        RunOptions(device="tpu")


# --- batch_size="auto" ----------------------------------------------------------------------------


def test_batch_search_stops_when_throughput_flattens():
    rates = {1: 100.0, 2: 190.0, 4: 350.0, 8: 600.0, 16: 620.0, 32: 900.0}  # 8 -> 16: +3%
    search = search_batch_size(rates.__getitem__, limit=1024)
    assert search.batch == 8 and list(search.rates) == [1, 2, 4, 8, 16]
    assert "16 gained less than 5% over 8" in search.reason


def test_batch_search_keeps_the_last_size_that_fit_in_memory():
    def rate(batch: int) -> float:
        if batch > 64:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for 1.2 GB")
        return float(batch)

    search = search_batch_size(rate, start=8, limit=1024)
    assert search.batch == 64 and search.reason == "out of memory at 128"
    assert search_batch_size(lambda b: float(b), start=8, limit=100).batch == 64  # 128 is past the limit


def test_batch_search_passes_other_errors_on():
    def rate(batch: int) -> float:
        if batch > 2:
            raise RuntimeError("Invalid rank for input")
        return float(batch)

    with pytest.raises(RuntimeError, match="Invalid rank"):
        search_batch_size(rate)
    with pytest.raises(RuntimeError, match="Failed to allocate"):  # the first size must run
        search_batch_size(lambda b: (_ for _ in ()).throw(RuntimeError("Failed to allocate")))


class FakeClock:
    """Time that advances, on the second of each pair of calls, by the run time the test set for
    the batch in hand: rows per second rise to 640 at 64 rows and stay there."""

    def __init__(self):
        self.now, self.calls, self.batch = 0.0, 0, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.now += self.batch / (10.0 * min(self.batch, 64))
        return self.now


def test_session_tune_batch_with_a_fake_clock(patches):
    # MusiCNN's per-frame graph on 8-frame windows: a real session, cheap at any batch.
    session, clock = Session(BUNDLED_DIR / "msd-musicnn-1.frames.onnx"), FakeClock()

    def feeds_for(start: int, stop: int) -> dict[str, np.ndarray]:
        clock.batch = stop - start
        return {session.input_names[0]: np.take(patches[:2, :8], np.arange(start, stop) % 2, axis=0)}

    search = session.tune_batch(feeds_for, session.output_names[:1], start=8, limit=1024, repeats=2, clock=clock)
    assert search.batch == 64 and list(search.rates) == [8, 16, 32, 64, 128]
    assert search.rates[64] == pytest.approx(640.0)
    calls = clock.calls
    assert session.tune_batch(feeds_for, session.output_names[:1], clock=clock) is search  # measured once
    assert clock.calls == calls and session.batch_search is search


@pytest.mark.slow  # times the graph at 8, 16, 32... patches: seconds on two cores
def test_auto_batch_size_real_run():
    auto = load_model(MUSICNN, batch_size="auto")
    assert isinstance(auto, Model) and auto.frame_sharing is not None
    search = auto.frame_sharing.rest.batch_search  # kept by the session that runs the patches
    assert search is not None and auto.batch_size == search.batch
    assert auto.batch_size in (8, 16, 32, 64, 128, 256) and min(search.rates) == 8
    audio = signal()
    expected = load_model(MUSICNN)(audio)
    got = auto(audio)
    for name in expected.outputs:  # batch composition may change float rounding, nothing more
        np.testing.assert_allclose(got.outputs[name], expected.outputs[name], rtol=0, atol=1e-5)


def test_cli_takes_batch_size_auto_and_precision(tmp_path):
    from mirfeat.cli import build_parser

    args = build_parser().parse_args(["tag", "x.wav", "--batch-size", "auto", "--precision", "fp16"])
    assert args.batch_size == "auto" and args.precision == "fp16"
    assert build_parser().parse_args(["run", "x", "-m", "m", "-o", "o", "--batch-size", "32"]).batch_size == 32
    for command in (["pitch", "x.wav", "-m", "m"], ["plot", "x.wav"], ["tempo", "x.wav", "-m", "m"]):
        args = build_parser().parse_args([*command, "--device", "auto", "--batch-size", "auto", "--precision", "int8"])
        assert (args.device, args.batch_size, args.precision) == ("auto", "auto", "int8")
        assert build_parser().parse_args(command).batch_size is None  # the model family's default


def test_default_batch_is_the_familys_everywhere():
    """None (no batch size given) means `default_batch_size(family)` for every way in."""
    from mirfeat.model import default_batch_size

    model = load_model(MUSICNN)
    assert model.batch_size == default_batch_size(model.family) == 16
    assert Model(MUSICNN, options=RunOptions(threads=1)).batch_size == 16  # as Pipeline and the engines build it
    with pytest.raises(ValueError, match="batch_size"):
        RunOptions(batch_size="big")


# --- fp16 -----------------------------------------------------------------------------------------

# fp16 vs fp32 on the CPU provider, MusiCNN on a synthetic signal: measured max abs diff 1.8e-3 on
# the sigmoid activations, 1.3e-2 / 3.4e-2 on logits / embeddings whose magnitude reaches ~20.
FP16_ACTIVATION_ATOL = 5e-3
FP16_RELATIVE_TO_MAX = 5e-3  # other outputs: max abs diff / max |fp32 value|


def test_bundled_fp16_variant_is_close_to_fp32(caplog):
    audio = signal()
    fp32 = load_model(MUSICNN)
    with caplog.at_level(logging.WARNING):
        fp16 = load_model(MUSICNN, precision="fp16")
    assert "fp16 on the CPU" in caplog.text
    assert isinstance(fp16, Model) and fp16.graph.session.path.name == "msd-musicnn-1.fp16.onnx"
    assert fp16.frame_sharing is not None and fp16.frame_sharing.rest.path.name == "msd-musicnn-1.patch.fp16.onnx"
    expected, got = fp32(audio), fp16(audio)
    assert got.labels == expected.labels and got.outputs.keys() == expected.outputs.keys()
    for name, value in expected.outputs.items():
        diff = float(np.max(np.abs(got.outputs[name] - value)))
        assert got.outputs[name].dtype == np.float32  # float32 in and out (keep_io_types)
        if name == expected.predictions_name:
            assert diff < FP16_ACTIVATION_ATOL, name
        else:
            assert diff < FP16_RELATIVE_TO_MAX * float(np.max(np.abs(value))), name
        assert diff > 0  # fp16 really ran


def test_missing_fp16_variant_names_the_command(tmp_path):
    for path in BUNDLED_DIR.glob("msd-musicnn-1*"):
        if ".fp16." not in path.name:
            shutil.copy(path, tmp_path / path.name)
    with pytest.raises(ModelError, match=r"msd-musicnn-1\.fp16\.onnx.*python -m conversion fp16"):
        load_model(tmp_path / "msd-musicnn-1.onnx", precision="fp16")


def test_fp16_conversion_reproduces_the_bundled_variant(tmp_path):
    pytest.importorskip("onnx")
    from conversion import fp16

    for path in BUNDLED_DIR.glob("msd-musicnn-1*"):
        if ".fp16." not in path.name:
            shutil.copy(path, tmp_path / path.name)
    report = fp16.convert(tmp_path / "msd-musicnn-1.onnx", check_seconds=0)
    assert sorted(p.name for p in report.written) == [
        "msd-musicnn-1.fp16.onnx",
        "msd-musicnn-1.frames.fp16.onnx",
        "msd-musicnn-1.patch.fp16.onnx",
    ]
    audio = signal(6.0)
    made = load_model(tmp_path / "msd-musicnn-1.onnx", precision="fp16")(audio)
    shipped = load_model(MUSICNN, precision="fp16")(audio)
    for name in made.outputs:
        np.testing.assert_array_equal(made.outputs[name], shipped.outputs[name])
    with pytest.raises(ValueError, match="already an fp16 variant"):
        fp16.convert(report.written[0])
