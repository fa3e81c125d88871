"""FSD-SINet: the frontend (TensorflowInputFSDSINet), the whole-clip normalisation, patching and the
[B, 101, 96, 1] layout against Essentia's TensorflowPredictFSDSINet, on a graph that returns each
patch and on the seeded replica (conversion/replicas.py)."""

import numpy as np
import pytest
from conftest import AUDIO_FILES, essentia_frames, essentia_load, run_python, write_wav

import mirfeat
from mirfeat.errors import AudioError
from mirfeat.essentia import TensorflowPredictFSDSINet, TensorflowPredictMusiCNN
from mirfeat.families import FSDSINET_FAMILY, family_for_input, fsdsinet_normalise
from mirfeat.patches import make_patches, patch_count
from mirfeat.signatures import FSDSINET, SILENCE_CUTOFF, frame_count, frame_signal

SR = 22050
FRAMES, HOP = 101, 50
TOL = 1e-4
# Bands more than 7 decades (70 dB) below their frame's loudest band carry the rounding of
# Essentia's single-precision FFT (a power error of a few 1e-6 of the loudest band): up to 8.1e-4
# measured on the chirp, 9 decades down. Looser there only.
FAINT_TOL = 1e-3
FAINT_DECADES = 7.0
# Essentia adds -100 dB noise from an unseeded generator to a silent frame (mean power < 1e-10):
# such frames cannot be compared value by value; their bands stay below -7 on both sides.
SILENT_CEILING = -7.0
REPLICA = "fsd-sinet-vgg42-tlpf-small-seeded-1"
PREDICTIONS, EMBEDDINGS = "model/predictions/Sigmoid", "model/global_max_pooling1d/Max"


def synthetic() -> dict[str, np.ndarray]:
    """Chirp over the whole band range, clicks, noise with a DC offset beyond full scale, a tone,
    and a signal with digital silence in the middle."""
    rng = np.random.default_rng(11)
    t = np.arange(int(3.1 * SR) + 37) / SR
    chirp = 0.8 * np.sin(2 * np.pi * (50 * t + (10000 - 50) / (2 * t[-1]) * t**2))
    clicks = np.zeros(SR + 311)
    clicks[:: SR // 8] = 1.0
    gap = np.concatenate([rng.standard_normal(9000) * 0.1, np.zeros(30000), rng.standard_normal(9001) * 0.5])
    return {
        "chirp": chirp.astype(np.float32),
        "clicks": clicks.astype(np.float32),
        "offset_noise": (0.4 + 1.7 * rng.standard_normal(2 * SR + 5)).astype(np.float32),
        "tone_1k": (0.05 * np.sin(2 * np.pi * 1000 * t[: 2 * SR])).astype(np.float32),
        "noise_silence_noise": gap.astype(np.float32),
    }


def silent_frames(signal: np.ndarray, normalize: bool = False) -> np.ndarray:
    """[n_frames] True where Essentia's FrameCutter calls the frame silent (it then adds noise)."""
    if normalize:
        signal = fsdsinet_normalise(signal)
    frames = frame_signal(signal, 660, 220).astype(np.float64)
    return (frames**2).mean(axis=1) < SILENCE_CUTOFF


def assert_bands_close(got: np.ndarray, expected: np.ndarray, silent: np.ndarray, what: str) -> None:
    """[frames, 96] (or [patches, frames, 96]) log10 bands: within TOL, FAINT_TOL for faint bands;
    in silent frames ([frames] or [patches, frames]) both below SILENT_CEILING."""
    assert got.shape == expected.shape, what
    assert (got[silent] < SILENT_CEILING).all() and (expected[silent] < SILENT_CEILING).all(), what
    loud = np.broadcast_to(~silent[..., None], got.shape)
    faint = expected < expected.max(axis=-1, keepdims=True) - FAINT_DECADES
    diff = np.abs(got - expected)
    assert diff[loud & ~faint].max(initial=0) <= TOL, (what, diff[loud & ~faint].max())
    assert diff[loud & faint].max(initial=0) <= FAINT_TOL, (what, diff[loud & faint].max())


def silent_patches(signal: np.ndarray, normalize: bool, mode: str = "discard") -> np.ndarray:
    """[patches, 101] True for the silent frames of each patch."""
    mask = silent_frames(signal, normalize).astype(np.float32)[:, None]
    return make_patches(mask, FRAMES, HOP, mode)[..., 0] > 0


def recordings(es) -> dict[str, np.ndarray]:
    """The shared recordings at 22050 Hz as Essentia loads them, 12 s at most, and one of them
    after 0.3 s of digital silence."""
    loaded = {p.name: essentia_load(es, p, SR)[: 12 * SR] for p in AUDIO_FILES}
    first = next(iter(loaded.values()))
    loaded["silence_then_recording"] = np.concatenate([np.zeros(int(0.3 * SR), np.float32), first])
    return loaded


def essentia_patches(es, pb, signal: np.ndarray, **params) -> np.ndarray:
    """The patches Essentia's wrapper feeds the graph: [patches, 101, 96]."""
    rows = np.asarray(es.TensorflowPredictFSDSINet(graphFilename=str(pb), **params)(signal), np.float32)
    return rows.reshape(-1, FRAMES, 96)


# --- fast tier: no oracle -----------------------------------------------------------------------


def test_table_holds_essentias_defaults():
    """TensorflowPredictFSDSINet's declareParameters and configure: patch 101 (fixed), hop 50, batch
    64, input `x`, output `model/predictions/Sigmoid`, transpose to [B, T, F, 1], no training flag."""
    family = FSDSINET_FAMILY
    assert (family.patch_size, family.patch_hop_size, family.batch_size) == (101, 50, 64)
    assert (family.input_name, family.output_name) == ("x", "model/predictions/Sigmoid")
    assert family.layout == "time_bands_1" and not family.has_training_flag and family.last_batch_mode is None
    assert FSDSINET.sample_rate == SR and (FSDSINET.frame_size, FSDSINET.hop_size, FSDSINET.n_fft) == (660, 220, 2048)
    assert family.signal_transform is fsdsinet_normalise


def test_window_fft_and_compression_are_fsdsinets():
    w = FSDSINET.window
    assert len(w) == 660 and w[0] == pytest.approx(0.08) and w[330] == pytest.approx(1.0)
    assert w[1] == pytest.approx(w[-1])  # periodic: symmetric about sample 330, not about 329.5
    assert FSDSINET.filters.shape == (1025, 96)
    assert FSDSINET.filters.max() == pytest.approx(1.0, abs=0.02)  # unit_max: triangles of peak 1
    assert FSDSINET.compress(np.array([0.0, 1e-40, 1.0, 100.0])).tolist() == [-30.0, -30.0, 0.0, 2.0]


def test_normalisation_is_whole_clip_single_precision():
    rng = np.random.default_rng(3)
    x = (0.2 + 3.0 * rng.standard_normal(20001)).astype(np.float32)
    y = fsdsinet_normalise(x)
    assert y.dtype == np.float32
    running = np.float32(0)
    for v in x:  # Essentia's sum(): one float32 accumulator, in order
        running = np.float32(running + v)
    centred = x - np.float32(running / np.float32(len(x)))
    peak = np.abs(centred).max()
    np.testing.assert_array_equal(y, centred / np.float32(peak + np.float32(0.005)))
    assert np.abs(y).max() == pytest.approx(peak / (peak + 0.005))
    np.testing.assert_array_equal(fsdsinet_normalise(np.full(500, 0.25, np.float32)), np.zeros(500, np.float32))
    assert len(fsdsinet_normalise(np.zeros(0, np.float32))) == 0


def test_streamed_blocks_are_normalised_as_one_clip():
    """The model's streaming path gathers the blocks: the same bands however the signal is cut."""
    x = (0.3 + 0.1 * np.random.default_rng(5).standard_normal(3 * SR)).astype(np.float32)
    whole = FSDSINET_FAMILY.bands(x)
    blocks = list(FSDSINET_FAMILY.stream_bands(x[i : i + 4097] for i in range(0, len(x), 4097)))
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert len(whole) == frame_count(len(x), 220)
    # The normalisation takes the gain out but for the absolute headroom: 3 x is divided by
    # 3 p + 0.005 instead of 3 (p + 0.005). Without it, 3 x gives bands 2 log10(3) higher.
    p = np.abs(x - x.mean(dtype=np.float64)).max()
    offset = 2 * np.log10(3 * (p + 0.005) / (3 * p + 0.005))
    np.testing.assert_allclose(FSDSINET_FAMILY.bands(3 * x) - whole, offset, atol=1e-4)
    raw, raw3 = (FSDSINET_FAMILY.bands(s, transform_signal=False) for s in (x, 3 * x))
    np.testing.assert_allclose(raw3 - raw, 2 * np.log10(3), atol=1e-4)


def test_family_from_input_shape_and_layout():
    assert family_for_input((101, 96, 1)) is FSDSINET_FAMILY
    assert family_for_input((-1, 96, 1)) is FSDSINET_FAMILY
    assert FSDSINET_FAMILY.input_shapes() == [(101, 96, 1)]
    patches = np.arange(2 * 101 * 96, dtype=np.float32).reshape(2, 101, 96)
    assert FSDSINET_FAMILY.model_input(patches).shape == (2, 101, 96, 1)


def test_normalize_is_fsdsinets_parameter_only():
    with pytest.raises(TypeError, match="no normalize parameter"):
        TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1", normalize=True)


# --- against Essentia ---------------------------------------------------------------------------


def test_frontend_equals_tensorflowinputfsdsinet(es):
    """Our bands of Essentia's frames of each signal, frame by frame (no normalisation here: the
    standalone frontend has none)."""
    signals = {**recordings(es), **synthetic()}
    frontend = es.TensorflowInputFSDSINet()
    for name, signal in signals.items():
        expected = np.array([frontend(f) for f in essentia_frames(es, signal, 660, 220)])
        assert_bands_close(FSDSINET.compute(signal), expected, silent_frames(signal), name)


@pytest.mark.parametrize("normalize", [True, False])
def test_patches_equal_the_wrappers(es, identity_fsdsinet, normalize):
    """What Essentia's TensorflowPredictFSDSINet feeds its graph (whole-clip normalisation, frames,
    bands, patches of 101 every 50) equals ours, on the recordings and the synthetic signals."""
    signals = {**recordings(es), **synthetic()}
    for name, signal in signals.items():
        expected = essentia_patches(es, identity_fsdsinet, signal, normalize=normalize)
        bands = FSDSINET_FAMILY.bands(signal, transform_signal=normalize)
        silent = silent_patches(signal, normalize)
        assert_bands_close(make_patches(bands, FRAMES, HOP), expected, silent, f"{name} normalize={normalize}")


def boundary_lengths() -> list[int]:
    """Lengths one sample either side of a frame-count step, where the frame count is one short
    of / at / past 1, 2 and 3 full patches (frames = ceil(N / 220) + 1)."""
    lengths = [1, 219, 221]
    for n_frames in (FRAMES, FRAMES + HOP, FRAMES + 2 * HOP):
        for frames in (n_frames - 1, n_frames, n_frames + 1):
            step = 220 * (frames - 2)  # N in (step, step + 220] gives `frames` frames
            lengths += [step + 1, step + 220]
    return sorted(set(lengths))


def test_patch_counts_around_every_boundary(es, identity_fsdsinet):
    for n in boundary_lengths():
        signal = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        for mode in ("discard", "repeat"):
            expected = essentia_patches(es, identity_fsdsinet, signal, lastPatchMode=mode)
            n_patches = patch_count(frame_count(n, 220), FRAMES, HOP, mode)
            assert len(expected) == n_patches, (n, mode)
            bands = FSDSINET_FAMILY.bands(signal)
            silent = silent_patches(signal, True, mode)
            assert_bands_close(make_patches(bands, FRAMES, HOP, mode), expected, silent, f"{n} {mode}")


def test_replica_equals_essentia(es, fsdsinet_dir):
    """Predictions within 1e-4 and embeddings within 1e-3 of Essentia running the same replica, on
    the recordings and the synthetic signals, through the facade; batchSize and repeat too."""
    pb = fsdsinet_dir / f"{REPLICA}.pb"
    onnx = str(pb.with_suffix(".onnx"))
    signals = {**recordings(es), **synthetic()}
    for output, tol in ((PREDICTIONS, 1e-4), (EMBEDDINGS, 1e-3)):
        for name, signal in signals.items():
            expected = np.asarray(es.TensorflowPredictFSDSINet(graphFilename=str(pb), output=output)(signal))
            got = TensorflowPredictFSDSINet(graphFilename=onnx, output=output)(signal)
            assert got.shape == expected.shape, (output, name)
            # Patches with silent frames hold Essentia's unseeded noise: measured up to 4e-3 there.
            noisy = silent_patches(signal, normalize=True).any(axis=1)
            assert np.abs(got - expected)[~noisy].max() <= tol, (output, name)
            assert np.abs(got - expected)[noisy].max(initial=0) <= 100 * tol, (output, name)
    signal = signals["chirp"]
    params = {"batchSize": 3, "lastPatchMode": "repeat", "patchHopSize": 30}
    expected = np.asarray(es.TensorflowPredictFSDSINet(graphFilename=str(pb), **params)(signal))
    got = TensorflowPredictFSDSINet(graphFilename=onnx, **params)(signal)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


def test_load_model_on_a_file(es, fsdsinet_dir, tmp_path):
    """`load_model(...)(path)`: decoded in blocks, normalised as one clip, predictions [patches, 200]
    and embeddings with the metadata's labels, as Essentia on the same samples."""
    pb = fsdsinet_dir / f"{REPLICA}.pb"
    signal = (0.6 * np.sin(np.linspace(0, 9000, 9 * SR)) + 0.05).astype(np.float32)
    wav = write_wav(tmp_path / "tone.wav", signal, SR)
    samples = essentia_load(es, wav, SR)
    model = mirfeat.load_model(pb.with_suffix(".onnx"))
    assert model.family is FSDSINET_FAMILY and model.sample_rate == SR
    result = model(wav)
    assert result.activations.shape == (patch_count(frame_count(len(samples), 220), FRAMES, HOP), 200)
    assert len(result.labels) == 200 and result.labels[0] == "Accelerating and revving and vroom"
    assert result.embeddings.shape[0] == result.activations.shape[0]
    for output, got in ((PREDICTIONS, result.activations), (EMBEDDINGS, result.embeddings)):
        expected = np.asarray(es.TensorflowPredictFSDSINet(graphFilename=str(pb), output=output)(samples))
        assert got is not None and np.abs(got - expected).max() <= (1e-4 if output == PREDICTIONS else 1e-3), output
    np.testing.assert_allclose(result.patch_times[:2], [0.0, 50 * 220 / SR])


def test_short_empty_and_silent_input_as_essentia(es, fsdsinet_dir, identity_fsdsinet):
    pb = fsdsinet_dir / f"{REPLICA}.pb"
    onnx = str(pb.with_suffix(".onnx"))
    empty = np.zeros(0, np.float32)
    with pytest.raises(RuntimeError, match="empty input signal"):
        es.TensorflowPredictFSDSINet(graphFilename=str(pb))(empty)
    with pytest.raises(ValueError, match="empty input signal"):
        TensorflowPredictFSDSINet(graphFilename=onnx)(empty)
    with pytest.raises(AudioError, match="empty input"):
        mirfeat.load_model(onnx)(empty, sample_rate=SR)
    short = (0.3 * np.random.default_rng(9).standard_normal(5000)).astype(np.float32)
    assert len(es.TensorflowPredictFSDSINet(graphFilename=str(pb))(short)) == 0
    assert TensorflowPredictFSDSINet(graphFilename=onnx)(short).shape == (0, 200)
    expected = np.asarray(es.TensorflowPredictFSDSINet(graphFilename=str(pb), lastPatchMode="repeat")(short))
    got = TensorflowPredictFSDSINet(graphFilename=onnx, lastPatchMode="repeat")(short)
    assert got.shape == expected.shape == (1, 200) and np.abs(got - expected).max() <= 1e-4
    # Silence, a constant (zero once the mean is taken out) and one sample: every frame is silent,
    # so both sides see -100 dB noise; same patch counts, bands at the noise level.
    for name, signal in {
        "zeros": np.zeros(30000, np.float32),
        "constant": np.full(30000, 0.25, np.float32),
        "one_sample": np.full(1, 0.5, np.float32),
    }.items():
        for mode in ("discard", "repeat"):
            expected = essentia_patches(es, identity_fsdsinet, signal, lastPatchMode=mode)
            got = make_patches(FSDSINET_FAMILY.bands(signal), FRAMES, HOP, mode)
            assert got.shape == expected.shape, (name, mode)
            assert silent_frames(signal, normalize=True).all()
            assert (got < -15).all() and (expected < -15).all(), (name, mode)  # noise of amplitude 1e-10
            if len(expected):
                assert np.abs(got.mean() - expected.mean()) < 0.5, (name, mode)


def test_graph_alone_converts_as_fsdsinet(fsdsinet_dir, tmp_path):
    """Without its JSON, conversion tells the family from the input [101, 96, 1] and keeps the
    embeddings the family table names (no sink of the graph): the model then runs as with it."""
    pb = tmp_path / "fsd-sinet-graph-alone.pb"
    pb.write_bytes((fsdsinet_dir / f"{REPLICA}.pb").read_bytes())
    run_python("-m", "conversion", "convert", str(pb))
    alone = mirfeat.load_model(pb.with_suffix(".onnx"))
    assert alone.family is FSDSINET_FAMILY and alone.sample_rate == SR
    assert (alone.predictions_name, alone.embeddings_name) == (PREDICTIONS, EMBEDDINGS)
    signal = (0.5 * np.random.default_rng(4).standard_normal(4 * SR)).astype(np.float32)
    got, expected = alone(signal), mirfeat.load_model(fsdsinet_dir / f"{REPLICA}.onnx")(signal)
    np.testing.assert_array_equal(got.activations, expected.activations)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)
