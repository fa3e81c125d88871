"""Pictures of model outputs over time (matplotlib, from the `plot` extra)."""

from __future__ import annotations

import os

import numpy as np

from mirfeat.families import CREPE_FAMILY, TEMPOCNN_FAMILY
from mirfeat.pitch import PitchTrack
from mirfeat.results import Result
from mirfeat.tempo import BPM_OFFSET, TempoEstimate


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'mirfeat[plot]'") from exc
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike, dpi: int):
    """Lay out, write the PNG, close (figures are not kept open); returns the Figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return fig


def _time_extent(patch_times: np.ndarray) -> list[float]:
    step = float(patch_times[1] - patch_times[0]) if len(patch_times) > 1 else 1.0
    end = float(patch_times[-1]) + step if len(patch_times) else 1.0
    return [0.0, end]


def plot_activations(
    activations: np.ndarray,
    labels: list[str],
    patch_times: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    top: int | None = None,
    size: tuple[float, float] = (12.0, 8.0),
    dpi: int = 100,
):
    """Draw activations [patches, classes] over time with one labelled row per class; save a PNG.

    top: only the classes with the highest mean. Returns the matplotlib Figure (closed).
    """
    plt = _pyplot()
    activations = np.asarray(activations)
    order = np.arange(activations.shape[1])
    if top and len(activations):
        order = np.sort(np.argsort(-activations.mean(axis=0), kind="stable")[:top])
    names = [labels[i] if i < len(labels) else str(i) for i in order]
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    image = ax.imshow(
        activations[:, order].T,
        aspect="auto",
        origin="upper",
        interpolation="nearest",
        extent=[*_time_extent(patch_times), len(order) - 0.5, -0.5],
        vmin=0.0,
        vmax=1.0,
    )
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(names, fontsize=max(4, min(10, 400 // max(len(order), 1))))
    ax.set_xlabel("time (s)")
    ax.set_title(title or "activations")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _save(plt, fig, path, dpi)


def plot_embeddings(
    embeddings: np.ndarray,
    patch_times: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    size: tuple[float, float] = (12.0, 5.0),
    dpi: int = 100,
):
    """Draw embeddings [patches, dims] over time (dimensions on the y axis); save a PNG."""
    plt = _pyplot()
    embeddings = np.asarray(embeddings)
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    image = ax.imshow(
        embeddings.T,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=[*_time_extent(patch_times), -0.5, embeddings.shape[1] - 0.5],
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("dimension")
    ax.set_title(title or f"embeddings ({embeddings.shape[1]} dimensions)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _save(plt, fig, path, dpi)


def plot_pitch(
    track: PitchTrack,
    path: str | os.PathLike,
    *,
    title: str = "",
    min_confidence: float = 0.5,
    size: tuple[float, float] = (12.0, 5.0),
    dpi: int = 100,
):
    """Draw a pitch contour (Hz on a log axis, over time) with the confidence below it; save a PNG.

    Frames whose confidence is below `min_confidence` are left out of the contour (a gap), as are
    frames without a pitch. Returns the matplotlib Figure (closed).
    """
    plt = _pyplot()
    frequency = np.where(track.voiced(min_confidence) & (track.frequency > 0), track.frequency, np.nan)
    fig, (ax, conf_ax) = plt.subplots(2, 1, figsize=size, dpi=dpi, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(track.times, frequency, linewidth=1.2)
    if np.isfinite(frequency).any():
        ax.set_yscale("log")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(title or "pitch")
    ax.grid(True, which="both", alpha=0.3)
    conf_ax.plot(track.times, track.confidence, linewidth=0.8, color="grey")
    conf_ax.axhline(min_confidence, linestyle="--", linewidth=0.8, color="red")
    conf_ax.set_ylim(0.0, 1.0)
    conf_ax.set_ylabel("confidence")
    conf_ax.set_xlabel("time (s)")
    return _save(plt, fig, path, dpi)


def plot_tempo(
    probabilities: np.ndarray,
    estimate: TempoEstimate,
    path: str | os.PathLike,
    *,
    title: str = "",
    size: tuple[float, float] = (12.0, 6.0),
    dpi: int = 100,
):
    """Draw TempoCNN's tempo probabilities [patches, 256] over time (BPM 30..285 on the y axis),
    with each patch's local tempo marked and the global tempo in the title; save a PNG."""
    plt = _pyplot()
    probabilities = np.asarray(probabilities)
    extent = [*_time_extent(estimate.patch_times), BPM_OFFSET - 0.5, BPM_OFFSET + probabilities.shape[1] - 0.5]
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    image = ax.imshow(
        probabilities.T,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=extent,
        vmin=0.0,
    )
    hop = float(extent[1] - extent[0]) / len(estimate.patch_times)
    ax.plot(estimate.patch_times + hop / 2, estimate.local_bpm, "w.", markersize=4)  # the local tempi
    ax.set_xlabel("time (s)")
    ax.set_ylabel("tempo (BPM)")
    ax.set_title(f"{title + ': ' if title else ''}{estimate.bpm:g} BPM ({estimate.aggregation})")
    fig.colorbar(image, ax=ax, fraction=0.03, label="probability")
    return _save(plt, fig, path, dpi)


def plot_result(result: Result, path: str | os.PathLike, *, top: int | None = None, title: str = "", **kwargs):
    """Activations of a model run with the model's labels (see `plot_activations`); a TempoCNN
    model's run as tempo probabilities over time (see `plot_tempo`), a CREPE model's as a pitch
    contour (see `plot_pitch`); `top` does not apply to those two."""
    if result.activations is None:
        raise ValueError("this result has no predictions output to plot")
    if result.algorithm == CREPE_FAMILY.algorithm:  # a contour, not 360 pitch bins as classes
        return plot_pitch(result.pitch(), path, title=title or os.path.basename(result.source), **kwargs)
    if result.algorithm == TEMPOCNN_FAMILY.algorithm:
        return plot_tempo(
            result.activations, result.tempo(), path, title=title or os.path.basename(result.source), **kwargs
        )
    return plot_activations(
        result.activations,
        result.labels,
        result.patch_times,
        path,
        title=title or os.path.basename(result.source),
        top=top,
        **kwargs,
    )
