"""Wall-time measurement shared by the benchmark scripts (imported as `timing`: a script's own folder
is on sys.path when it runs).

- `wall_time(fn)`: one run, (seconds, what it returned);
- `best_of(fn, repeats)`: repeated runs after a warm-up run (sessions, caches, thread pools, CUDA
  kernels), keeping every time: `Timing.best` is the figure to report, `Timing.median` says how
  steady the machine was;
- `interleaved({label: fn}, repeats)`: rounds over several callables, one run of each per round,
  so that a busy moment on a shared machine hits them all alike (compare them as ratios);
- `audio_rate(audio_seconds, seconds)`: audio-seconds per second of wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Wall times of the timed runs of one callable, in seconds (warm-ups not included), and what
    its last run returned."""

    times: tuple[float, ...]
    value: Any = None

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def wall_time(fn: Callable[[], Any]) -> tuple[float, Any]:
    """One run of `fn`: (seconds of wall time, what it returned)."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_of(fn: Callable[[], Any], repeats: int, *, warmup: bool = True) -> Timing:
    """`repeats` timed runs of `fn`, after one untimed run when `warmup`."""
    if warmup:
        fn()
    runs = [wall_time(fn) for _ in range(max(1, repeats))]
    return Timing(tuple(seconds for seconds, _ in runs), runs[-1][1])


def interleaved(
    fns: Mapping[str, Callable[[], Any]], repeats: int, *, warmup: bool = True, rewarm: bool = False
) -> dict[str, Timing]:
    """`repeats` rounds, each timing one run of every callable in turn; `warmup`: one untimed run of
    each before the first round; `rewarm`: one untimed run right before each timed run too (for
    callables that evict each other's caches, e.g. many onnxruntime sessions of one large graph)."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {label: [] for label in fns}
    values: dict[str, Any] = {}
    for _ in range(max(1, repeats)):
        for label, fn in fns.items():
            if rewarm:
                fn()
            seconds, values[label] = wall_time(fn)
            times[label].append(seconds)
    return {label: Timing(tuple(times[label]), values[label]) for label in fns}


def audio_rate(audio_seconds: float, seconds: float) -> float:
    """Audio-seconds processed per second of wall time."""
    return audio_seconds / seconds
