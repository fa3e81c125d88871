"""CREPE's activations -> pitch: Essentia's PitchCREPE decoding, shared by the facade and the model API.

Each of the 360 activations of a frame is a pitch bin 20 cents wide (bin i at 1997.38 + 20 i cents
above 10 Hz, so ~31.7 Hz to ~2005.5 Hz). The frame's pitch is the average of the bins' cents
weighted by their activations over the 9 bins around the strongest one (fewer at the edges), and
its confidence is the strongest activation. Arithmetic follows Essentia's single-precision code
step by step: float32 cents table, products in float32 summed in double, weights summed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BINS = 360
CENTS_SHIFT = np.float32(1997.3794084376191)  # cents of bin 0 above 10 Hz
CENTS_SPAN = np.float32(7180.0)  # cents from bin 0 to bin 359 (20 per bin)
REFERENCE_HZ = 10.0  # 0 cents
HALF_WINDOW = 4  # bins each side of the strongest one in the weighted average


def bin_cents() -> np.ndarray:
    """Cents above 10 Hz of each pitch bin, [360] float32, as Essentia's PitchCREPE tabulates them."""
    step = np.float32(CENTS_SPAN / np.float32(N_BINS - 1))
    cents = np.arange(N_BINS, dtype=np.float32) * step + CENTS_SHIFT
    cents[-1] = CENTS_SPAN + CENTS_SHIFT
    return cents


def essentia_argmax(activations: np.ndarray) -> np.ndarray:
    """Index of each row's largest value as std::max_element finds it: the first of ties, NaNs
    skipped, and 0 when the row starts with NaN. [n, bins] -> [n]."""
    if activations.shape[1] == 0:
        raise ValueError("activations have no bins")
    nan = np.isnan(activations)
    index = np.where(nan, -np.inf, activations).argmax(axis=1)
    index[nan[:, 0]] = 0
    return index


def local_average_cents(activations: np.ndarray) -> np.ndarray:
    """[n, 360] activations -> [n] float32 cents: the activation-weighted mean of the cents of
    the bins within 4 of the strongest; NaN where the weights sum to 0 or are NaN."""
    activations = np.asarray(activations, np.float32)
    if activations.ndim != 2 or activations.shape[1] != N_BINS:
        raise ValueError(f"CREPE activations must be [frames, {N_BINS}], got shape {activations.shape}")
    n = len(activations)
    centre = essentia_argmax(activations) if n else np.zeros(0, np.int64)
    # Bins outside [0, 360) join the sums as exact zeros, which leaves them bit-identical.
    padded = np.pad(activations, ((0, 0), (HALF_WINDOW, HALF_WINDOW)))
    cents = np.pad(bin_cents(), HALF_WINDOW)
    rows = np.arange(n)
    product_sum = np.zeros(n, np.float64)
    weight_sum = np.zeros(n, np.float32)
    for offset in range(2 * HALF_WINDOW + 1):  # in Essentia's order: lowest bin first
        column = centre + offset
        weights = padded[rows, column]
        product_sum += weights * cents[column]  # float32 products, summed in double
        weight_sum += weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return product_sum.astype(np.float32) / weight_sum


def cents_to_hz(cents: np.ndarray) -> np.ndarray:
    """Cents above 10 Hz -> Hz, float32 (computed in double as Essentia does)."""
    return (REFERENCE_HZ * 2.0 ** (np.asarray(cents, np.float64) / 1200.0)).astype(np.float32)


@dataclass(frozen=True)
class PitchTrack:
    """Pitch per frame of a CREPE model run.

    times: [n] seconds, the centre of each frame (Essentia's time stamps: i * hop).
    frequency: [n] Hz, 0 where the activations give no pitch (all zero or NaN near the peak).
    confidence: [n] the frame's strongest activation in [0, 1], 0 where the frequency is 0.
    """

    times: np.ndarray
    frequency: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    def voiced(self, threshold: float = 0.5) -> np.ndarray:
        """[n] bool: frames whose confidence reaches `threshold`."""
        return self.confidence >= threshold


def decode_pitch(activations: np.ndarray, times: np.ndarray) -> PitchTrack:
    """Essentia's PitchCREPE on [n, 360] activations with their [n] time stamps in seconds."""
    activations = np.asarray(activations, np.float32)
    cents = local_average_cents(activations)
    pitched = ~np.isnan(cents)
    frequency = np.zeros(len(cents), np.float32)
    frequency[pitched] = cents_to_hz(cents[pitched])
    confidence = np.zeros(len(cents), np.float32)
    if len(cents):
        strongest = activations[np.arange(len(cents)), essentia_argmax(activations)]
        confidence[pitched] = strongest[pitched]
    times = np.asarray(times, np.float64)
    if times.shape != cents.shape:
        raise ValueError(f"{len(times)} time stamps for {len(cents)} frames of activations")
    return PitchTrack(times=times, frequency=frequency, confidence=confidence)
