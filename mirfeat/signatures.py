"""Essentia's model input signatures in numpy: framing, window, mel bands, compression.

Each `Signature` reproduces one `TensorflowInput*` algorithm together with the FrameCutter that
its `TensorflowPredict*` wrapper puts in front of it: frames centred on multiples of the hop
with zero padding, `ceil(N / hop) + 1` frames, a window (symmetric Hann; FSD-SINet's periodic
Hamming), the magnitude spectrum (of the frame zero-padded to the FFT size), a mel filterbank built
like Essentia's `MelBands`, then a compression. All frames are computed at once (one batched rfft
and one matmul). How bands are cut into patches and fed to a model, and any transform of the
whole signal before framing, are the family's business (`mirfeat.families`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# Essentia builds its filterbank in single precision: band edges are float32 values, the mel
# step is accumulated in float32, and the log/exp run in double on float32 arguments. Doing the
# same here gives bit-identical filter weights (a float64 filterbank differs by up to 7e-4
# relative near band edges, which shows up as 3e-4 in log-compressed bands).
_f32 = np.float32
Scalar = float | np.floating  # a Python or numpy float
_SLANEY_LIN_SLOPE = _f32(3 / 200.0)
_SLANEY_MIN_LOG_HZ = _f32(1000.0)
_SLANEY_MIN_LOG_MEL = _f32(_SLANEY_MIN_LOG_HZ * _SLANEY_LIN_SLOPE)
_SLANEY_LOG_STEP = _f32(np.log(6.4) / 27.0)


def hz_to_mel_slaney(hz: Scalar) -> np.float32:
    """Slaney's mel (librosa's htk=False): linear below 1 kHz, logarithmic above."""
    hz = _f32(hz)
    if hz < _SLANEY_MIN_LOG_HZ:
        return _f32(hz * _SLANEY_LIN_SLOPE)
    return _f32(float(_SLANEY_MIN_LOG_MEL) + np.log(float(hz / _SLANEY_MIN_LOG_HZ)) / float(_SLANEY_LOG_STEP))


def mel_to_hz_slaney(mel: Scalar) -> np.float32:
    mel = _f32(mel)
    if mel < _SLANEY_MIN_LOG_MEL:
        return _f32(mel / _SLANEY_LIN_SLOPE)
    return _f32(float(_SLANEY_MIN_LOG_HZ) * np.exp(float(_f32((mel - _SLANEY_MIN_LOG_MEL) * _SLANEY_LOG_STEP))))


def hz_to_mel_htk(hz: Scalar) -> np.float32:
    """HTK mel: 2595 log10(1 + f / 700)."""
    return _f32(2595.0 * np.log10(float(_f32(hz)) / 700.0 + 1.0))


def mel_to_hz_htk(mel: Scalar) -> np.float32:
    return _f32(700.0 * (10.0 ** (float(_f32(mel)) / 2595.0) - 1.0))


def _hz(hz: Scalar) -> np.float32:
    return _f32(hz)


_WARPS = {"slaneyMel": (hz_to_mel_slaney, mel_to_hz_slaney), "htkMel": (hz_to_mel_htk, mel_to_hz_htk)}


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_bands: int,
    f_min: float,
    f_max: float,
    warping: str = "slaneyMel",
    weighting: str = "linear",
    normalize: str = "unit_tri",
) -> np.ndarray:
    """Triangular mel filters as Essentia's MelBands builds them: [n_bands, n_fft//2 + 1] float32.

    warping: "slaneyMel" or "htkMel" (where the band edges lie). weighting: "linear"
    (triangles linear in Hz) or "warping" (linear in the warped scale). normalize: "unit_tri"
    (divide by the triangle's area in the weighting scale, librosa's norm="slaney"), "unit_sum"
    (weights of a band sum to 1) or "unit_max" (peak 1, no normalisation).
    """
    to_mel, to_hz = _WARPS[warping]
    scale = to_mel if weighting == "warping" else _hz
    # Band edges: n_bands + 2 points evenly spaced in mel, accumulated as Essentia does.
    low, high = to_mel(f_min), to_mel(f_max)
    step = _f32((high - low) / _f32(n_bands + 1))
    edges, mel = [], low
    for _ in range(n_bands + 2):
        edges.append(to_hz(mel))
        mel = _f32(mel + step)

    n_bins = n_fft // 2 + 1
    bin_step = _f32((sample_rate / 2.0) / (n_bins - 1))
    filters = np.zeros((n_bands, n_bins), dtype=np.float32)
    for band in range(n_bands):
        lo, centre, hi = edges[band : band + 3]
        rise = _f32(scale(centre) - scale(lo))
        fall = _f32(scale(hi) - scale(centre))
        first, last = int(np.ceil(lo / bin_step)), int(np.floor(hi / bin_step))
        if last >= n_bins:
            raise ValueError(f"mel band edge {hi} Hz is above the Nyquist frequency")
        for j in range(first, last + 1):
            f = _f32(_f32(j) * bin_step)
            if f < centre:
                filters[band, j] = _f32((scale(f) - scale(lo)) / rise)
            else:
                filters[band, j] = _f32((scale(hi) - scale(f)) / fall)
        if normalize == "unit_tri":
            filters[band] /= _f32((float(rise) + float(fall)) / 2.0)
        elif normalize == "unit_sum":
            filters[band] /= filters[band].sum(dtype=np.float32)
        elif normalize != "unit_max":
            raise ValueError(f"unknown mel normalisation {normalize!r}")
    return filters


def hann_symmetric(size: int) -> np.ndarray:
    """Essentia's default Hann: 0.5 - 0.5 cos(2 pi i / (M - 1)), zero at both ends."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / (size - 1))


def hamming_periodic(size: int) -> np.ndarray:
    """Essentia's Hamming with constantsDecimals=2 and symmetric=false: 0.54 - 0.46 cos(2 pi i / M),
    i.e. the symmetric window of M + 1 points without its last one."""
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(size) / size)


WINDOWS = {"hann_symmetric": hann_symmetric, "hamming_periodic": hamming_periodic}
# UnaryOperator(type="log10") clips its input here before the log.
LOG10_CLIP = 1e-30


def frame_count(n_samples: int, hop_size: int) -> int:
    """Frames Essentia's centred FrameCutter emits for N samples: ceil(N / hop) + 1 (0 for N = 0)."""
    if n_samples <= 0:
        return 0
    return -(-n_samples // hop_size) + 1


def frame_signal(signal: np.ndarray, frame_size: int, hop_size: int) -> np.ndarray:
    """Centred frames as Essentia's FrameCutter cuts them, shape [ceil(N/hop) + 1, frame_size].

    Frame k covers samples [k*hop - frame_size/2, k*hop + frame_size/2), zero outside [0, N).
    Returns a read-only strided view.
    """
    n_frames = frame_count(len(signal), hop_size)
    if n_frames == 0:
        return np.zeros((0, frame_size), dtype=np.float32)
    half = frame_size // 2
    padded_len = (n_frames - 1) * hop_size + frame_size
    padded = np.zeros(padded_len, dtype=np.float32)
    padded[half : half + len(signal)] = signal
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame_size)
    return windows[::hop_size][:n_frames]


# The streaming FrameCutter in front of every TensorflowPredict* wrapper treats silent frames
# (silentFrames="noise"): a frame whose mean power is below -100 dB (Essentia's isSilent) gets
# uniform noise of amplitude db2pow(-100) added, from an unseeded generator.
SILENCE_CUTOFF = 1e-10
SILENT_FRAME_NOISE = 1e-10


def streaming_frames(
    frames: np.ndarray, first: int, n_samples: int, frame_size: int, hop_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Frames [k, frame_size] (frame indices first .. first + k - 1 of `frame_signal`) as Essentia's
    streaming FrameCutter emits them: a copy, where a silent frame gets -100 dB uniform noise.

    A silent frame among the first ones, whose centred window reaches into the left zero padding
    of z = frame_size/2 - index * hop_size samples, is rebuilt from a buffer that already holds those
    z zeros: its samples land z further right (2z zeros, then the signal). Only frames of digital
    near-silence are affected; the noise cannot be reproduced (Essentia does not seed it), only its
    level, so `rng` is seeded by the caller.
    """
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame_size
    silent = np.flatnonzero(power < SILENCE_CUTOFF)
    if len(silent) == 0:
        return frames
    frames = np.array(frames, dtype=np.float32)
    half = (frame_size + 1) // 2
    for row in silent:
        pad = half - (first + row) * hop_size
        if pad > 0:  # the frame's samples sit after `pad` zeros; Essentia copies them `pad` further on
            n_audio = min(frame_size - pad, n_samples)
            shifted = np.zeros(frame_size, np.float32)
            shifted[pad : pad + n_audio] = frames[row, :n_audio]
            frames[row] = shifted
        noise = rng.uniform(-1.0, 1.0, frame_size) * SILENT_FRAME_NOISE
        frames[row] += noise.astype(np.float32)
    return frames


@dataclass(frozen=True)
class Signature:
    """One Essentia TensorflowInput* frontend plus its wrapper's framing and patching.

    Shapes: `compute(signal)` maps [N] samples at `sample_rate` to [n_frames, n_bands].
    n_fft: the FFT size; a frame shorter than it is zero-padded (where Essentia puts the padding
    does not change the magnitude spectrum).
    compression: "log10_1p_1e4" (log10(1 + 1e4 x)), "ln_plus_0.01" (ln(x + 0.01)), "log10"
    (log10(max(x, 1e-30)), Essentia's UnaryOperator) or "none".
    window_type: a key of `WINDOWS`.
    """

    name: str
    sample_rate: int
    frame_size: int
    hop_size: int
    n_fft: int
    n_bands: int
    f_min: float
    f_max: float
    warping: str
    weighting: str
    normalize: str
    spectrum: str  # "power" or "magnitude": what the filters act on
    compression: str
    window_type: str = "hann_symmetric"

    @cached_property
    def window(self) -> np.ndarray:
        return WINDOWS[self.window_type](self.frame_size)

    @cached_property
    def filters(self) -> np.ndarray:
        """Mel filters, transposed for `spectrum @ filters`: [n_fft//2 + 1, n_bands], float64."""
        return np.ascontiguousarray(
            np.float64(
                mel_filterbank(
                    self.sample_rate,
                    self.n_fft,
                    self.n_bands,
                    self.f_min,
                    self.f_max,
                    self.warping,
                    self.weighting,
                    self.normalize,
                ).T
            )
        )

    def compute(self, signal: np.ndarray) -> np.ndarray:
        """Bands for every frame of a mono signal: [N] -> [ceil(N/hop) + 1, n_bands] float32."""
        chunks = list(self.stream([signal]))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.n_bands), np.float32)

    def stream(self, blocks: Iterable[np.ndarray], chunk_frames: int = 4096) -> Iterator[np.ndarray]:
        """Bands of a signal that arrives in blocks of samples: yields [frames, n_bands] chunks whose
        concatenation is `compute` of the whole signal. Memory stays bounded by the block and chunk
        sizes, whatever the signal's length."""
        size, hop, half = self.frame_size, self.hop_size, self.frame_size // 2
        buffer = np.zeros(half, np.float32)  # buffer[0] is sample `first * hop - half`: zero padding first
        first = n_samples = 0  # the next frame to emit; samples received so far
        rng = np.random.default_rng(0)  # the silent-frame noise; the same sequence however blocks fall
        for block in blocks:
            buffer = np.concatenate([buffer, np.asarray(block, np.float32).ravel()])
            n_samples += len(block)
            # Frames that end within the samples received: k * hop - half + size <= n_samples.
            end = (n_samples + half - size) // hop + 1 if n_samples + half >= size else 0
            for start in range(first, end, chunk_frames):
                stop = min(end, start + chunk_frames)
                yield self._bands(buffer, start, stop, first, n_samples, rng)
            if end > first:
                buffer = buffer[(end - first) * hop :]
                first = end
        total = frame_count(n_samples, hop)
        if total > first:  # the last frames, zero-padded past the end
            buffer = np.concatenate([buffer, np.zeros((total - first) * hop + size, np.float32)])
            for start in range(first, total, chunk_frames):
                yield self._bands(buffer, start, min(total, start + chunk_frames), first, n_samples, rng)

    def _bands(
        self, buffer: np.ndarray, start: int, stop: int, first: int, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Bands of frames start..stop-1 from a buffer whose sample 0 begins frame `first`."""
        offset = (start - first) * self.hop_size
        span = buffer[offset : offset + (stop - start - 1) * self.hop_size + self.frame_size]
        frames = np.lib.stride_tricks.sliding_window_view(span, self.frame_size)[:: self.hop_size]
        frames = streaming_frames(frames, start, n_samples, self.frame_size, self.hop_size, rng) * self.window
        spectrum = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=1))
        if self.spectrum == "power":
            spectrum **= 2
        return self.compress(spectrum @ self.filters).astype(np.float32)

    def compress(self, bands: np.ndarray) -> np.ndarray:
        if self.compression == "log10_1p_1e4":
            return np.log10(1.0 + 1e4 * bands)
        if self.compression == "ln_plus_0.01":
            return np.log(bands + 0.01)
        if self.compression == "log10":
            return np.log10(np.maximum(bands, LOG10_CLIP))
        if self.compression == "none":
            return bands
        raise ValueError(f"unknown compression {self.compression!r}")

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre time in seconds of each frame."""
        return np.arange(n_frames) * self.hop_size / self.sample_rate


MUSICNN = Signature(
    name="musicnn",
    sample_rate=16000,
    frame_size=512,
    hop_size=256,
    n_fft=512,
    n_bands=96,
    f_min=0.0,
    f_max=8000.0,
    warping="slaneyMel",
    weighting="linear",
    normalize="unit_tri",
    spectrum="power",
    compression="log10_1p_1e4",
)

# Essentia's TensorflowInputVGGish: symmetric Hann(400) zero-padded to 512 at the end, magnitude
# spectrum, triangles linear in HTK mel (not librosa's htk=True, whose triangles are linear in Hz),
# no normalisation, ln(x + 0.01); 96-frame patches with Essentia's default hop of 93.
VGGISH = Signature(
    name="vggish",
    sample_rate=16000,
    frame_size=400,
    hop_size=160,
    n_fft=512,
    n_bands=64,
    f_min=125.0,
    f_max=7500.0,
    warping="htkMel",
    weighting="warping",
    normalize="unit_max",
    spectrum="magnitude",
    compression="ln_plus_0.01",
)

# Essentia's TensorflowInputTempoCNN: 11025 Hz, Hann(1024) frames every 512 samples, 40 bands of
# the linear magnitude spectrum (20-5000 Hz, Slaney mel, unit_tri), no compression.
TEMPOCNN = Signature(
    name="tempocnn",
    sample_rate=11025,
    frame_size=1024,
    hop_size=512,
    n_fft=1024,
    n_bands=40,
    f_min=20.0,
    f_max=5000.0,
    warping="slaneyMel",
    weighting="linear",
    normalize="unit_tri",
    spectrum="magnitude",
    compression="none",
)


def crepe_frame_count(n_samples: int, hop_size: int) -> int:
    """Frames the CREPE wrapper's FrameCutter keeps for N samples: floor(N / hop) + 1 (0 for N = 0).

    Its frames are centred like the others, but validFrameThresholdRatio 0.5 drops a last frame
    that holds fewer than frame_size / 2 samples (left padding included): those centred past the end.
    """
    return n_samples // hop_size + 1 if n_samples > 0 else 0


def standardise_frames(frames: np.ndarray) -> np.ndarray:
    """Each frame of [n, size] to zero mean and unit population std, as Essentia's
    TensorNormalize(scaler="standard", axis=0, skipConstantSlices=false) does for CREPE: no
    epsilon, so a constant frame (digital silence) becomes 0 / 0 = NaN."""
    frames = frames.astype(np.float64)
    mean = frames.mean(axis=1, keepdims=True)
    centred = frames - mean
    std = np.sqrt(np.einsum("ij,ij->i", centred, centred) / frames.shape[1])[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred / std).astype(np.float32)


@dataclass(frozen=True)
class FrameSignature:
    """CREPE's input: raw centred frames, each standardised on its own (`standardise_frames`).

    The same interface as `Signature` (its "bands" are the frame's samples): `compute(signal)`
    maps [N] samples at `sample_rate` to [floor(N / hop) + 1, frame_size]. The hop is given in
    milliseconds, as Essentia's TensorflowPredictCREPE takes it (`hopSize`, default 10 ms); the
    samples between frames are int(sample_rate * hop_ms / 1000), as the wrapper rounds them.
    """

    name: str
    sample_rate: int
    frame_size: int
    hop_ms: float

    @property
    def hop_size(self) -> int:
        """Samples between frame centres (Essentia computes it in single precision, then truncates)."""
        return int(float(_f32(self.sample_rate) * _f32(self.hop_ms)) / 1000.0)

    @property
    def n_bands(self) -> int:
        return self.frame_size

    def with_hop_ms(self, hop_ms: float) -> FrameSignature:
        if not hop_ms > 0:
            raise ValueError(f"the hop size must be a positive number of milliseconds, not {hop_ms!r}")
        return FrameSignature(self.name, self.sample_rate, self.frame_size, float(hop_ms))

    def compute(self, signal: np.ndarray) -> np.ndarray:
        """Standardised frames of a mono signal: [N] -> [floor(N / hop) + 1, frame_size] float32."""
        chunks = list(self.stream([signal]))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.frame_size), np.float32)

    def stream(self, blocks: Iterable[np.ndarray], chunk_frames: int = 1024) -> Iterator[np.ndarray]:
        """`compute` of a signal that arrives in blocks of samples, in chunks of frames."""
        size, hop, half = self.frame_size, self.hop_size, (self.frame_size + 1) // 2
        buffer = np.zeros(half, np.float32)  # left zero padding, then the samples
        origin = -half  # sample index of buffer[0]; frame k starts at sample k * hop - half
        first = n_samples = 0  # the next frame to emit; samples received so far
        for block in blocks:
            buffer = np.concatenate([buffer, np.asarray(block, np.float32).ravel()])
            n_samples += len(block)
            # Frames that end within the samples received: k * hop - half + size <= n_samples.
            end = (n_samples + half - size) // hop + 1 if n_samples + half >= size else 0
            for start in range(first, end, chunk_frames):
                yield self._frames(buffer, start * hop - half - origin, min(end, start + chunk_frames) - start)
            if end > first:
                first = end
                # Keep from the next frame's start (a hop longer than the frame skips samples).
                drop = min(first * hop - half - origin, len(buffer))
                buffer, origin = buffer[drop:], origin + drop
        total = crepe_frame_count(n_samples, hop)
        if total > first:  # the last frames, zero-padded past the end
            needed = (total - 1) * hop - half + size - origin
            buffer = np.concatenate([buffer, np.zeros(max(needed - len(buffer), 0), np.float32)])
            for start in range(first, total, chunk_frames):
                yield self._frames(buffer, start * hop - half - origin, min(total, start + chunk_frames) - start)

    def _frames(self, buffer: np.ndarray, offset: int, count: int) -> np.ndarray:
        """`count` standardised frames, the first starting at sample `offset` of the buffer."""
        span = buffer[offset : offset + (count - 1) * self.hop_size + self.frame_size]
        frames = np.lib.stride_tricks.sliding_window_view(span, self.frame_size)[:: self.hop_size]
        return standardise_frames(frames)

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Time stamps in seconds as Essentia's PitchCREPE gives them: i * hop_ms / 1000, in single
        precision (from the hop in ms, not the whole samples the frames are cut at)."""
        steps = np.arange(n_frames, dtype=np.float32) * _f32(self.hop_ms)
        return (steps.astype(np.float64) / 1000.0).astype(np.float32).astype(np.float64)


# Essentia's TensorflowPredictCREPE: 1024-sample frames at 16 kHz every 10 ms (its hopSize default).
CREPE = FrameSignature(name="crepe", sample_rate=16000, frame_size=1024, hop_ms=10.0)

# What a family's `signature` may be: mel bands of frames, or CREPE's standardised frames.
Frontend = Signature | FrameSignature
# Essentia's TensorflowInputFSDSINet: 22050 Hz, periodic Hamming(660) frames every 220 samples
# zero-padded to a 2048-point FFT, 96 bands of the power spectrum (50-10500 Hz, Slaney mel,
# triangles of peak 1), log10 clipped at 1e-30.
FSDSINET = Signature(
    name="fsdsinet",
    sample_rate=22050,
    frame_size=660,
    hop_size=220,
    n_fft=2048,
    n_bands=96,
    f_min=50.0,
    f_max=10500.0,
    warping="slaneyMel",
    weighting="linear",
    normalize="unit_max",
    spectrum="power",
    compression="log10",
    window_type="hamming_periodic",
)
