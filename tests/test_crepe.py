"""CREPE: the standardised-frame frontend, PitchCREPE's decoding, the facade, the model API, the CLI
and the conversion of the shared crepe-tiny-1 graph, against Essentia's PitchCREPE on the same graph."""

import json

import numpy as np
import pytest
from conftest import AUDIO_FILES, ESSENTIA_MODELS, essentia_load, write_wav

import mirfeat
from mirfeat.cli import main
from mirfeat.errors import AudioError
from mirfeat.families import CREPE_FAMILY, MUSICNN_FAMILY, PREDICT_2D_FAMILY, family_for_input
from mirfeat.pitch import N_BINS, bin_cents, cents_to_hz, decode_pitch, essentia_argmax
from mirfeat.results import Result
from mirfeat.signatures import CREPE, crepe_frame_count, standardise_frames

CREPE_PB = ESSENTIA_MODELS / "crepe" / "crepe-tiny-1.pb"
SR = 16000
SECONDS = 6  # of each shared recording: enough voiced and unvoiced frames, cheap to run


def tone(hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def sweep(f0: float, f1: float, seconds: float) -> np.ndarray:
    """A logarithmic sine sweep from f0 to f1 Hz."""
    t = np.arange(int(seconds * SR)) / SR
    k = np.log(f1 / f0) / seconds
    return (0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


# --- fast tier: frontend and decoding ---------------------------------------------------------


def test_frame_count_and_hop_follow_essentias_wrapper():
    assert CREPE.hop_size == 160 and CREPE.frame_size == 1024 and CREPE.sample_rate == SR
    assert CREPE.with_hop_ms(12.34).hop_size == 197  # int(16000 * 12.34 / 1000), truncated
    for n, frames in ((0, 0), (1, 1), (159, 1), (160, 2), (161, 2), (16000, 101)):
        assert crepe_frame_count(n, 160) == frames
        assert len(CREPE.compute(np.ones(n, np.float32))) == frames
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        CREPE.with_hop_ms(0)


def test_frames_are_centred_and_standardised_each_on_its_own():
    rng = np.random.default_rng(0)
    signal = (rng.standard_normal(5000) * np.linspace(0.01, 1, 5000)).astype(np.float32)
    frames = CREPE.compute(signal)
    padded = np.concatenate([np.zeros(512, np.float32), signal, np.zeros(1024, np.float32)])
    for k in (0, 3, 20, len(frames) - 1):  # frame k covers samples [160 k - 512, 160 k + 512)
        raw = padded[160 * k : 160 * k + 1024].astype(np.float64)
        np.testing.assert_allclose(frames[k], (raw - raw.mean()) / raw.std(), atol=2e-6)
    np.testing.assert_allclose(frames.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(frames.std(axis=1), 1, atol=1e-5)


def test_a_constant_frame_standardises_to_nan_as_in_essentia():
    frames = standardise_frames(np.stack([np.zeros(1024), np.full(1024, 0.25), np.arange(1024.0)]))
    assert np.isnan(frames[:2]).all() and np.isfinite(frames[2]).all()


def test_streamed_frames_equal_the_whole_signal():
    signal = np.random.default_rng(1).standard_normal(12345).astype(np.float32)
    for hop_ms in (10.0, 12.34, 100.0):  # 100 ms: a hop longer than the frame
        frontend = CREPE.with_hop_ms(hop_ms)
        whole = frontend.compute(signal)
        for block in (1, 700, 5000):
            parts = list(frontend.stream(signal[i : i + block] for i in range(0, len(signal), block)))
            np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_frame_times_are_essentias_single_precision_stamps():
    times = CREPE.with_hop_ms(12.34).frame_times(5)
    expected = [np.float32(np.float32(i) * np.float32(12.34) / 1000.0) for i in range(5)]
    np.testing.assert_array_equal(times, expected)
    np.testing.assert_array_equal(CREPE_FAMILY.patch_times(3), np.float32([0.0, 0.01, 0.02]))


def test_cents_table():
    cents = bin_cents()
    assert cents.dtype == np.float32 and len(cents) == N_BINS
    np.testing.assert_allclose(np.diff(cents), 20.0, atol=2e-3)
    np.testing.assert_allclose(cents_to_hz(cents[[0, -1]]), [31.70, 2005.8], rtol=1e-3)


def test_decoding_recovers_the_pitch_of_a_bump_between_bins():
    cents = bin_cents().astype(np.float64)
    true = cents[100] + 7.0  # between bins 100 and 101
    activations = np.exp(-0.5 * ((cents - true) / 25.0) ** 2)[None].astype(np.float32)
    track = decode_pitch(activations, np.zeros(1))
    np.testing.assert_allclose(track.frequency, 10 * 2 ** (true / 1200), rtol=2e-4)
    np.testing.assert_allclose(track.confidence, activations.max())


def test_decoding_window_at_the_edges_ties_and_nan():
    activations = np.zeros((5, N_BINS), np.float32)
    activations[0, 0] = activations[0, 1] = 0.5  # peak at the lower edge: bins 0..4 only
    activations[1, -1] = 0.9  # the upper edge: bins 355..359
    activations[2, [10, 200]] = 0.7  # a tie: the first wins
    activations[3] = np.nan  # no pitch: frequency 0, confidence 0
    # row 4: all zeros, weights sum to 0: no pitch either
    track = decode_pitch(activations, np.arange(5) * 0.01)
    cents = bin_cents()
    np.testing.assert_allclose(track.frequency[0], cents_to_hz((cents[0] + cents[1]) / 2), rtol=1e-6)
    np.testing.assert_allclose(track.frequency[1], cents_to_hz(cents[-1]), rtol=1e-6)
    np.testing.assert_allclose(track.frequency[2], cents_to_hz(cents[10]), rtol=1e-6)
    np.testing.assert_array_equal(track.frequency[3:], 0)
    np.testing.assert_array_equal(track.confidence, np.float32([0.5, 0.9, 0.7, 0, 0]))
    assert list(essentia_argmax(np.float32([[np.nan, 1, 2], [0, np.nan, 2], [3, 3, np.nan]]))) == [0, 2, 0]
    with pytest.raises(ValueError, match=r"\[frames, 360\]"):
        decode_pitch(np.zeros((2, 10)), np.zeros(2))


def test_the_1024_input_named_frames_is_crepe_and_other_vectors_are_heads():
    assert family_for_input((1024,), "frames") is CREPE_FAMILY
    assert family_for_input((1024,), "frames:0") is CREPE_FAMILY
    assert family_for_input((1024,), "model/Placeholder") is PREDICT_2D_FAMILY  # a head on YAMNet embeddings
    assert family_for_input((1024,)) is PREDICT_2D_FAMILY
    assert family_for_input((187, 96), "frames") is MUSICNN_FAMILY
    assert CREPE_FAMILY.with_hop_ms(5).signature.hop_size == 80
    with pytest.raises(ValueError, match="CREPE's parameter"):
        MUSICNN_FAMILY.with_hop_ms(5)


def test_run_keeps_crepe_frames_but_no_class_summary(crepe_tiny, tmp_path):
    # Means of pitch-bin activations over a file are no tags: the summary leaves them out.
    wav = write_wav(tmp_path / "a.wav", tone(440, 1.0), SR)
    (done,) = mirfeat.run([wav], [str(crepe_tiny)], tmp_path / "out", progress=False)
    row = json.loads((tmp_path / "out" / "summary.jsonl").read_text())
    assert row["models"] == {} and row["patches"] == len(done.patch_times) > 0
    activations = done.outputs[f"crepe-tiny-1/{CREPE_FAMILY.output_name}"]
    np.testing.assert_allclose(activations, mirfeat.load_model(crepe_tiny)(wav).activations, atol=1e-6)


def test_pitch_of_another_models_result_is_refused():
    result = Result({"p": np.zeros((2, 50))}, [], np.zeros(2), "p", algorithm="TensorflowPredictMusiCNN")
    with pytest.raises(ValueError, match="needs a CREPE model's result, not a TensorflowPredictMusiCNN one"):
        result.pitch()
    with pytest.raises(ValueError, match="top_k needs k >= 1, not -1"):
        result.top_k(-1)


def test_tag_sends_pitch_and_tempo_models_to_their_commands(crepe_tiny, deeptemp, tmp_path, capsys):
    wav = str(write_wav(tmp_path / "a.wav", tone(440, 0.5), SR))
    assert main(["tag", wav, "-m", str(crepe_tiny)]) == 2
    assert "a TensorflowPredictCREPE model; use `mirfeat pitch`" in capsys.readouterr().err
    assert main(["tag", wav, "--model", str(deeptemp)]) == 2
    assert "a TensorflowPredictTempoCNN model; use `mirfeat tempo`" in capsys.readouterr().err


def test_pitch_needs_a_crepe_model(tmp_path, capsys):
    wav = write_wav(tmp_path / "a.wav", tone(440, 0.5), SR)
    assert main(["pitch", str(wav)]) == 2
    assert "needs a CREPE model" in capsys.readouterr().err
    assert main(["pitch", str(wav), "-m", "msd-musicnn-1"]) == 2
    assert "not a CREPE model" in capsys.readouterr().err
    assert main(["pitch", str(wav), "-m", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err
    with pytest.raises(
        ValueError, match=r"msd-musicnn-1\.onnx: TensorflowPredictMusiCNN frames at a fixed hop.*CREPE.s parameter"
    ):
        mirfeat.load_model(hop_ms=5)


# --- the converted graph ----------------------------------------------------------------------


def test_conversion_writes_crepe_metadata_and_a_dynamic_batch(crepe_tiny):
    import onnx

    metadata = json.loads(crepe_tiny.with_suffix(".json").read_text())
    assert metadata["inference"] == {"sample_rate": SR, "algorithm": "TensorflowPredictCREPE"}
    assert metadata["schema"]["inputs"] == [{"name": "frames", "type": "float", "shape": [1024]}]
    assert metadata["schema"]["outputs"][0] == {"name": "model/classifier/Sigmoid", "output_purpose": "predictions"}
    assert metadata["mirfeat"]["check_max_abs_diff"]["model/classifier/Sigmoid"] < 1e-5
    # Every conv block pools before its batch norm; conv1-conv3 (256, 128, 64 steps) run as 1-D Convs.
    assert metadata["mirfeat"]["graph_rewrites"] == {
        "pool_before_batchnorm": 6,
        "affine_as_batchnorm": 0,
        "squeeze_excitation_upsample": 0,
        "conv_1d": 3,
    }
    convs = [node for node in onnx.load(str(crepe_tiny)).graph.node if node.op_type == "Conv"]
    kernels = [next(a.ints for a in conv.attribute if a.name == "kernel_shape") for conv in convs]
    assert kernels == [[512], [64], [64], [64, 1], [64, 1], [64, 1]]
    model = mirfeat.load_model(crepe_tiny)
    assert model.family is CREPE_FAMILY
    assert not isinstance(model.graph.input_shape[0], int)  # dynamic batch
    frames = np.random.default_rng(0).standard_normal((7, 1024)).astype(np.float32)
    whole = model.graph.run(frames, [model.predictions_name], 7)[model.predictions_name]
    in_ones = model.graph.run(frames, [model.predictions_name], 1)[model.predictions_name]
    assert whole.shape == (7, N_BINS)
    np.testing.assert_allclose(in_ones, whole, atol=1e-6)


def test_model_api_facade_and_cli_agree(crepe_tiny, tmp_path, capsys):
    from mirfeat.essentia import PitchCREPE, TensorflowPredictCREPE

    signal = np.concatenate([sweep(110, 880, 1.5), np.zeros(3000, np.float32), tone(330, 0.5)])
    wav = write_wav(tmp_path / "sweep.wav", signal, SR)
    samples = mirfeat.audio.load_audio(wav, SR)
    result = mirfeat.load_model(crepe_tiny, hop_ms=20)(wav)
    track = result.pitch()
    assert result.activations.shape == (len(samples) // 320 + 1, N_BINS)
    time, frequency, confidence, activations = PitchCREPE(graphFilename=str(crepe_tiny), hopSize=20)(samples)
    np.testing.assert_array_equal(activations, result.activations)
    predict = TensorflowPredictCREPE(graphFilename=str(crepe_tiny), hopSize=20)
    np.testing.assert_array_equal(predict(samples), activations)
    np.testing.assert_array_equal(time, np.float32(track.times))
    np.testing.assert_array_equal(frequency, track.frequency)
    np.testing.assert_array_equal(confidence, track.confidence)
    voiced = confidence > 0.5
    assert voiced.mean() > 0.7
    # the sweep rises, the tone sits at 330 Hz
    np.testing.assert_allclose(frequency[(time > 1.6) & voiced], 330, rtol=0.02)

    assert main(["pitch", str(wav), "-m", str(crepe_tiny), "--hop-size", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "time,frequency,confidence" and len(lines) == len(time) + 1
    t, f, c = (float(x) for x in lines[5].split(","))
    assert (t, f, c) == pytest.approx((time[4], frequency[4], confidence[4]), abs=1e-4)
    out = tmp_path / "p.json"
    assert main(["pitch", str(wav), "-m", str(crepe_tiny), "--json", "-o", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["frames"] == len(record["frequency"]) == len(samples) // 160 + 1


def test_plot_draws_a_pitch_contour(crepe_tiny, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    wav = write_wav(tmp_path / "tone.wav", tone(220, 1.0), SR)
    out = tmp_path / "pitch.png"
    assert main(["plot", str(wav), "--model", str(crepe_tiny), "-o", str(out), "--width", "6", "--height", "4"]) == 0
    assert "pitch contour" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_input_is_refused(crepe_tiny):
    from mirfeat.essentia import PitchCREPE

    with pytest.raises(ValueError, match="PitchCREPE: empty input signal"):  # Essentia raises too
        PitchCREPE(graphFilename=str(crepe_tiny))(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="array: no audio samples"):
        mirfeat.load_model(crepe_tiny)(np.zeros(0, np.float32), sample_rate=SR)


# --- against Essentia -------------------------------------------------------------------------


@pytest.mark.parametrize("hop_ms", [10.0, 12.34, 100.0])
def test_frame_counts_equal_essentias_around_every_boundary(es, hop_ms):
    """Frames (rows of activations) for lengths around multiples of the hop: Essentia's graph only."""
    predict = es.TensorflowPredictCREPE(graphFilename=str(CREPE_PB), hopSize=hop_ms)
    frontend = CREPE.with_hop_ms(hop_ms)
    hop = frontend.hop_size
    rng = np.random.default_rng(2)
    for n in (1, hop - 1, hop, hop + 1, 511, 512, 513, 1024, 3 * hop, 3 * hop + 1):
        signal = (0.1 * rng.standard_normal(n)).astype(np.float32)
        assert len(predict(signal)) == len(frontend.compute(signal)), n


def assert_pitch_equals_essentia(mine, theirs, what: str) -> None:
    """Parity: activations and confidence within 1e-4, frequency within 0.01 Hz
    where Essentia's confidence > 0.1, time stamps equal. Frames of digital silence (NaN here,
    Essentia's TensorFlow turns its NaN into rows of 0s and 1s) are compared on what they are."""
    time, frequency, confidence, activations = mine
    e_time, e_frequency, e_confidence, e_activations = theirs
    assert activations.shape == e_activations.shape, what
    np.testing.assert_array_equal(time, e_time, err_msg=what)
    silent = np.isnan(activations).all(axis=1)
    assert not np.isnan(activations[~silent]).any(), what
    # Essentia: the same arbitrary row for every silent frame; here no pitch at all.
    assert (e_activations[silent] == e_activations[silent][:1]).all(), what
    np.testing.assert_array_equal(frequency[silent], 0, err_msg=what)
    np.testing.assert_array_equal(confidence[silent], 0, err_msg=what)
    sounding = ~silent
    np.testing.assert_allclose(activations[sounding], e_activations[sounding], atol=1e-4, rtol=0, err_msg=what)
    np.testing.assert_allclose(confidence[sounding], e_confidence[sounding], atol=1e-4, rtol=0, err_msg=what)
    pitched = sounding & (e_confidence > 0.1)
    np.testing.assert_allclose(frequency[pitched], e_frequency[pitched], atol=0.01, rtol=0, err_msg=what)


def test_pitch_equals_essentia_on_the_shared_recordings(es, crepe_tiny):
    from mirfeat.essentia import PitchCREPE

    mine, theirs = PitchCREPE(graphFilename=str(crepe_tiny)), es.PitchCREPE(graphFilename=str(CREPE_PB))
    for path in AUDIO_FILES:
        signal = essentia_load(es, path)[: SECONDS * SR]
        assert_pitch_equals_essentia(mine(signal), theirs(signal), path.name)


def test_pitch_equals_essentia_on_synthetic_signals(es, crepe_tiny):
    from mirfeat.essentia import PitchCREPE

    rng = np.random.default_rng(3)
    signals = {
        "sweep_50_1900": sweep(50, 1900, 3.0),
        "tone_440": tone(440, 1.0),
        "quiet_tone_97": tone(97.3, 1.0, amplitude=1e-4),
        "tone_silence_tone": np.concatenate([tone(250, 0.5), np.zeros(8000, np.float32), tone(600, 0.5)]),
        "noise": (0.2 * rng.standard_normal(12345)).astype(np.float32),
        "silence": np.zeros(8000, np.float32),
        "one_sample": np.float32([0.3]),
    }
    for hop_ms, names in ((10.0, list(signals)), (7.5, ["sweep_50_1900", "tone_silence_tone", "one_sample"])):
        mine = PitchCREPE(graphFilename=str(crepe_tiny), hopSize=hop_ms)
        theirs = es.PitchCREPE(graphFilename=str(CREPE_PB), hopSize=hop_ms)
        for name in names:
            assert_pitch_equals_essentia(mine(signals[name]), theirs(signals[name]), f"{name} at {hop_ms} ms")
    # Essentia's reading of silence, for the record: every frame at bin 0's neighbourhood, confidence 1.
    _, e_frequency, e_confidence, _ = es.PitchCREPE(graphFilename=str(CREPE_PB))(signals["silence"])
    assert (e_confidence == 1).all() and np.allclose(e_frequency, 32.44, atol=0.01)
