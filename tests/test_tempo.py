"""Tempo: Essentia's TempoCNN algorithm (global BPM, local tempi, aggregation), the model API's
`Result.tempo()`, `mirfeat tempo`, the tempo plot and the tempocnn wheel's models frozen for Essentia.

Parity runs on the shared deeptemp_k16 graph: Essentia reads the .pb, mirfeat its ONNX conversion
(the `deeptemp` fixture), both on the same samples."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import AUDIO_DIR, AUDIO_FILES, ESSENTIA_MODELS, ROOT, TENSORFLOW_FIXTURES, essentia_load, run_python

import mirfeat
from mirfeat.cli import main
from mirfeat.essentia import TempoCNN, TensorflowPredictTempoCNN
from mirfeat.results import Result
from mirfeat.tempo import AGGREGATIONS, NoTempoError, aggregate, estimate_tempo, local_tempi

RATE = 11025
DEEPTEMP_PB = ESSENTIA_MODELS / "tempocnn" / "deeptemp_k16.pb"
PROBABILITY_TOL = 1e-4  # per-patch softmax values


# -- aggregation (no model) ------------------------------------------------------------------------


def test_majority_takes_the_first_of_tied_tempi():
    assert aggregate(np.array([100, 140, 140, 100], np.float32), "majority") == 100.0
    assert aggregate(np.array([140, 100, 100, 140, 90], np.float32), "majority") == 140.0
    assert aggregate(np.array([90, 120, 120], np.float32), "MAJORITY") == 120.0  # lower-cased, as Essentia


def test_mean_and_median_in_single_precision():
    bpm = np.array([161, 160, 100], np.float32)
    assert aggregate(bpm, "mean") == float(np.float32(421) / np.float32(3))
    assert aggregate(bpm, "median") == 160.0
    assert aggregate(np.array([161, 160], np.float32), "median") == 160.5  # the two middle values' mean
    assert aggregate(np.array([30, 285, 31, 100], np.float32), "median") == 65.5


def test_no_patch_and_bad_methods():
    for method in AGGREGATIONS:
        with pytest.raises(NoTempoError, match="shorter than one patch"):
            aggregate(np.zeros(0, np.float32), method)
    with pytest.raises(ValueError, match="majority, mean, median"):
        aggregate(np.array([120.0]), "mode")
    with pytest.raises(ValueError, match="majority, mean, median"):
        TempoCNN(graphFilename="no-such.onnx", aggregationMethod="vote")


def test_local_tempo_is_the_first_most_probable_class():
    probabilities = np.zeros((3, 256), np.float32)
    probabilities[0, [10, 20]] = 0.5  # tie: the first class, 40 BPM
    probabilities[1, 255] = 0.9
    probabilities[2, 0] = 0.3
    bpm, confidence = local_tempi(probabilities)
    np.testing.assert_array_equal(bpm, [40, 285, 30])
    np.testing.assert_array_equal(confidence, np.float32([0.5, 0.9, 0.3]))
    estimate = estimate_tempo(probabilities, np.array([0.0, 5.9, 11.9]), "median")
    assert estimate.bpm == 40.0 and estimate.local()[1] == (5.9, 285.0, pytest.approx(0.9))
    with pytest.raises(ValueError, match=r"\[patches, 256\]"):
        estimate_tempo(np.zeros((2, 50)), np.zeros(2))


def test_tempo_of_another_models_result_is_refused():
    result = Result({"p": np.zeros((2, 50))}, [], np.zeros(2), "p", algorithm="TensorflowPredictMusiCNN")
    with pytest.raises(ValueError, match="needs a TempoCNN model"):
        result.tempo()


def test_tempo_command_needs_a_tempocnn_model(capsys):
    audio = str(AUDIO_DIR / "dubstep.flac")
    assert main(["tempo", audio]) == 2
    assert "no model: give a TempoCNN model with -m" in capsys.readouterr().err
    assert main(["tempo", audio, "-m", "msd-musicnn-1"]) == 2
    assert "a TensorflowPredictMusiCNN model, not TempoCNN" in capsys.readouterr().err


def test_tempo_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    from mirfeat.plot import plot_tempo

    probabilities = np.random.default_rng(0).dirichlet(np.ones(256), size=6).astype(np.float32)
    estimate = estimate_tempo(probabilities, np.arange(6) * 5.944)
    fig = plot_tempo(probabilities, estimate, tmp_path / "tempo.png", size=(8, 4), dpi=50)
    assert (tmp_path / "tempo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_ylabel() == "tempo (BPM)" and ax.get_ylim() == (29.5, 285.5)
    assert f"{estimate.bpm:g} BPM (majority)" in ax.get_title()


# -- parity with Essentia on deeptemp_k16 ----------------------------------------------------------


def assert_tempocnn_equal(es, audio, onnx, pb=DEEPTEMP_PB, **params):
    """Essentia's TensorflowPredictTempoCNN and TempoCNN (every aggregation) against mirfeat's on one
    signal: probabilities within PROBABILITY_TOL, global and local tempi equal; where Essentia
    raises, mirfeat raises too. Returns Essentia's local tempi."""
    expected = np.asarray(es.TensorflowPredictTempoCNN(graphFilename=str(pb), **params)(audio), np.float32)
    got = TensorflowPredictTempoCNN(graphFilename=str(onnx), **params)(audio)
    if expected.size == 0:  # no patch: Essentia gives an empty list
        assert got.size == 0
    else:
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= PROBABILITY_TOL
    local = np.zeros(0, np.float32)
    for method in AGGREGATIONS:
        try:
            want = es.TempoCNN(graphFilename=str(pb), aggregationMethod=method, **params)(audio)
        except RuntimeError as exc:  # mean / median of no patch
            assert "empty array" in str(exc)
            with pytest.raises(ValueError, match=f"{method} of empty array"):
                TempoCNN(graphFilename=str(onnx), aggregationMethod=method, **params)(audio)
            continue
        have = TempoCNN(graphFilename=str(onnx), aggregationMethod=method, **params)(audio)
        assert have[0] == want[0], method
        np.testing.assert_array_equal(have[1], want[1])
        np.testing.assert_allclose(have[2], want[2], rtol=0, atol=PROBABILITY_TOL)
        local = want[1]
    return local


@pytest.mark.parametrize("mode", ["discard", "repeat"])
def test_tempocnn_equals_essentia_on_every_recording(es, deeptemp, mode):
    """Every shared recording; the ones shorter than a patch (11.9 s) have no patch in discard mode
    (Essentia: majority 0.0, mean and median raise) and one repeated patch in repeat mode. The model
    API's `tempo()` gives the same tempi."""
    model = mirfeat.load_model(deeptemp)
    for path in AUDIO_FILES:
        audio = essentia_load(es, path, RATE)
        local = assert_tempocnn_equal(es, audio, deeptemp, lastPatchMode=mode)
        result = model(audio, sample_rate=RATE, last_patch_mode=mode)
        if len(local) == 0:
            with pytest.raises(NoTempoError, match="shorter than one TempoCNN patch"):
                result.tempo()
            continue
        for method in AGGREGATIONS:
            expected = es.TempoCNN(graphFilename=str(DEEPTEMP_PB), aggregationMethod=method, lastPatchMode=mode)(audio)
            estimate = result.tempo(method)
            assert estimate.bpm == expected[0], (path.name, method)
            np.testing.assert_array_equal(estimate.local_bpm, expected[1])
            assert len(estimate.patch_times) == len(local)


def click_track(bpm_segments: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Short decaying noise bursts at each segment's tempo, (BPM, seconds) one after another."""
    rng = np.random.default_rng(seed)
    burst = (rng.standard_normal(220) * np.exp(-np.arange(220) / 40.0)).astype(np.float32)
    parts = []
    for bpm, seconds in bpm_segments:
        part = np.zeros(int(seconds * RATE), np.float32)
        for start in np.arange(0, len(part) - len(burst), 60.0 / bpm * RATE).astype(int):
            part[start : start + len(burst)] += 0.5 * burst
        parts.append(part)
    return np.concatenate(parts)


def test_click_tracks_equal_essentia(es, deeptemp):
    """Steady clicks and a tempo change halfway (local tempi differ, so the aggregations differ)."""
    seen = {}
    for segments in ([(120.0, 30.0)], [(87.0, 25.0)], [(90.0, 18.0), (150.0, 18.0)]):
        seen[str(segments)] = assert_tempocnn_equal(es, click_track(segments), deeptemp)
    assert len(set(seen[str([(90.0, 18.0), (150.0, 18.0)])])) > 1  # the change shows in the local tempi


def test_short_empty_and_silent_input_as_essentia(es, deeptemp):
    short = (0.1 * np.random.default_rng(1).standard_normal(RATE)).astype(np.float32)
    assert_tempocnn_equal(es, short, deeptemp)  # no patch: majority 0.0, mean and median raise
    bpm, local, confidence = TempoCNN(graphFilename=str(deeptemp))(short)
    assert bpm == 0.0 and local.shape == confidence.shape == (0,)
    assert_tempocnn_equal(es, short, deeptemp, lastPatchMode="repeat")
    with pytest.raises(RuntimeError, match="empty input signal"):
        es.TempoCNN(graphFilename=str(DEEPTEMP_PB))(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="empty input signal"):
        TempoCNN(graphFilename=str(deeptemp))(np.zeros(0, np.float32))
    # Digital silence: Essentia's bands of a silent patch are not exactly 0 inside its streaming
    # network, and its standardisation blows that up: its tempi vary from call to call. mirfeat's
    # are the model's reading of an all-zero patch, the same every time; the shapes are Essentia's.
    silence = np.zeros(200000, np.float32)
    want = es.TempoCNN(graphFilename=str(DEEPTEMP_PB))(silence)
    first, second = (TempoCNN(graphFilename=str(deeptemp))(silence) for _ in range(2))
    assert first[1].shape == want[1].shape == (2,)
    assert first[0] == second[0] and np.array_equal(first[2], second[2])


def test_conversion_keeps_the_batch_norms_in_onnxruntimes_blocked_layout(deeptemp):
    """Each of the 12 batch norms after a Relu (frozen as Mul, Add) becomes one BatchNormalization;
    the conversion's own check against TensorFlow covers the outputs."""
    import onnx

    metadata = json.loads(deeptemp.with_suffix(".json").read_text())
    assert metadata["mirfeat"]["graph_rewrites"] == {
        "pool_before_batchnorm": 0,
        "affine_as_batchnorm": 12,
        "squeeze_excitation_upsample": 0,
        "conv_1d": 0,
    }
    assert max(metadata["mirfeat"]["check_max_abs_diff"].values()) < 1e-5
    ops = [node.op_type for node in onnx.load(str(deeptemp)).graph.node]
    assert ops.count("BatchNormalization") == 12 and "Mul" not in ops


def test_batch_size_does_not_change_the_tempi(deeptemp):
    audio = click_track([(128.0, 60.0)])
    runs = [TempoCNN(graphFilename=str(deeptemp), batchSize=size)(audio) for size in (64, 1, -1)]
    for bpm, local, confidence in runs[1:]:
        assert bpm == runs[0][0]
        np.testing.assert_array_equal(local, runs[0][1])
        np.testing.assert_allclose(confidence, runs[0][2], rtol=0, atol=1e-6)


def test_tempo_command(es, deeptemp, capsys, tmp_path):
    techno, short = AUDIO_DIR / "techno_loop.mp3", AUDIO_DIR / "dubstep.flac"
    expected = es.TempoCNN(graphFilename=str(DEEPTEMP_PB), aggregationMethod="median")(essentia_load(es, techno, RATE))
    args = ["tempo", str(techno), str(short), "-m", str(deeptemp), "--json", "--local", "--aggregation", "median"]
    assert main(args) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines[0]["bpm"] == expected[0] and lines[0]["aggregation"] == "median"
    assert [row["bpm"] for row in lines[0]["local"]] == expected[1].tolist()
    assert [row["time"] for row in lines[0]["local"]] == [0.0, 5.944, 11.889, 17.833]
    assert "shorter than one patch" in lines[1]["error"] and "--last-patch-mode repeat" in captured.err
    assert main(["tempo", str(techno), "-m", str(deeptemp), "--local"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"{techno}: {expected[0]:g} BPM" and len(text) == 1 + len(expected[1])

    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "tempo.png"
    assert main(["plot", str(techno), "--model", str(deeptemp), "-o", str(out), "--width", "6", "--height", "4"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the tempocnn wheel's models, frozen for Essentia ---------------------------------------------


@pytest.fixture(scope="session")
def deepsquare_k1(tmp_path_factory):
    """The tempocnn wheel's smallest model frozen to deepsquare_k1.pb (+ .json) and converted to .onnx."""
    if importlib.util.find_spec("tempocnn") is None:
        pytest.skip("the tempocnn package is not installed (pip install --no-deps tempocnn==0.0.8)")
    out = tmp_path_factory.mktemp("tempocnn_wheel")
    run_python("-m", "conversion", "freeze-tempocnn", "deepsquare_k1", "-o", str(out), "--onnx")
    return out / "deepsquare_k1.pb"


TENSORFLOW_FIXTURES.append("deepsquare_k1")


def test_frozen_wheel_model_runs_in_essentia_and_equals_mirfeat(es, deepsquare_k1):
    """The frozen graph runs in Essentia's wrappers with their defaults; the ONNX conversion gives
    the same probabilities (within 1e-4) and tempi. The freeze checked the graph against the Keras
    model, the conversion the ONNX against the graph (both recorded)."""
    onnx = deepsquare_k1.with_suffix(".onnx")
    meta = json.loads(onnx.with_suffix(".json").read_text())
    assert meta["inference"] == {"sample_rate": RATE, "algorithm": "TempoCNN"}
    assert meta["classes"][0] == "30" and meta["classes"][-1] == "285"
    assert meta["mirfeat"]["check_max_abs_diff"]["output"] <= 1e-5
    assert "Affero" in meta["license"]
    techno = essentia_load(es, AUDIO_DIR / "techno_loop.mp3", RATE)
    assert_tempocnn_equal(es, techno, onnx, pb=deepsquare_k1)
    assert_tempocnn_equal(es, click_track([(100.0, 20.0)]), onnx, pb=deepsquare_k1)
    model = mirfeat.load_model(onnx)  # a JSON naming Essentia's TempoCNN loads as its family
    assert model.family is mirfeat.FAMILIES["TensorflowPredictTempoCNN"]
    assert model(techno, sample_rate=RATE).tempo().bpm == es.TempoCNN(graphFilename=str(deepsquare_k1))(techno)[0]


def test_max_normalised_wheel_models_are_refused():
    """Checked before TensorFlow or the wheel is needed."""
    proc = subprocess.run(
        [sys.executable, "-m", "conversion", "freeze-tempocnn", "fcn"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "divided by its maximum" in proc.stderr
