"""Audio in: decode a file or take an array, downmix to mono, resample to a signature's rate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import samplerate
import soundfile

from mirfeat.errors import AudioError

AudioInput = str | os.PathLike | np.ndarray

# Essentia's MonoLoader resamples with libsamplerate; its resampleQuality numbers that library's
# converters. Using the same library (default: sinc medium) keeps decoded audio within ~1e-3 of
# Essentia's, where a different high-quality resampler differs by up to ~1e-1 on bright material.
RESAMPLE_QUALITY = {0: "sinc_best", 1: "sinc_medium", 2: "sinc_fastest", 3: "zero_order_hold", 4: "linear"}


def load_audio(
    source: AudioInput, sample_rate: int, *, input_rate: int | None = None, resample_quality: int = 1
) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from a file path or an array.

    Files: anything libsndfile decodes (wav, flac, ogg, mp3, aiff, ...). Arrays: [samples] or
    [samples, channels] (or [channels, samples] with at most 8 channels), with `input_rate`
    giving their rate (default: already `sample_rate`). Channels are averaged, which for stereo
    is Essentia's MonoLoader downmix 0.5 * (L + R).
    """
    if isinstance(source, np.ndarray):
        mono = downmix(source)
        rate = input_rate or sample_rate
    else:
        samples, rate = decode(source)
        mono = downmix(samples, str(source), channels_first=False)
    return resample(mono, rate, sample_rate, resample_quality)


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to float32 [samples, channels] and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode as audio ({exc})") from None
    return samples, int(rate)


def downmix(samples: np.ndarray, name: str = "array", channels_first: bool | None = None) -> np.ndarray:
    """[samples] / [samples, channels] / [channels, samples] -> mono float32 [samples].

    `channels_first` None guesses: a first axis of at most 8 that is the shorter one is channels.
    """
    samples = np.asarray(samples)
    if samples.dtype.kind not in "fiu":
        raise AudioError(f"{name}: audio must be numeric, got dtype {samples.dtype}")
    if samples.dtype.kind in "iu":  # integer PCM -> [-1, 1)
        samples = samples / float(np.iinfo(samples.dtype).max + 1)
    if samples.ndim == 2:
        if channels_first is None:
            channels_first = 0 < samples.shape[0] <= 8 and samples.shape[0] < samples.shape[1]
        axis = 0 if channels_first else 1
        if samples.shape[axis] == 0:
            raise AudioError(f"{name}: audio has no channels")
        samples = samples.mean(axis=axis)
    elif samples.ndim != 1:
        raise AudioError(f"{name}: audio must be 1-D or 2-D, got shape {samples.shape}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return samples


def resample(samples: np.ndarray, input_rate: int, output_rate: int, quality: int = 1) -> np.ndarray:
    """Resample with libsamplerate; quality as Essentia's resampleQuality (0 sinc best .. 4 linear)."""
    if input_rate <= 0:
        raise AudioError(f"invalid sample rate {input_rate}")
    if input_rate == output_rate or len(samples) == 0:
        return samples
    recipe = RESAMPLE_QUALITY.get(quality)
    if recipe is None:
        raise ValueError(f"resampleQuality must be 0..4, not {quality}")
    resampled = samplerate.resample(samples, output_rate / input_rate, recipe)
    return np.ascontiguousarray(resampled, dtype=np.float32)
