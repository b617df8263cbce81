"""Paired timing shared by the benchmarks: a shared machine's speed drifts over seconds, so
candidates are timed in rounds (shuffled order, each for about ``min_time`` seconds) and
compared through the median over rounds of their ratio within the same round."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from focalcal._machine import describe_machine


def paired_times(
    candidates: dict[str, Callable[[], object]],
    rounds: int,
    min_time: float,
    sync: Callable[[], object] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of every candidate, one value per round."""
    calls = {}
    for name, fn in candidates.items():  # warm up, and size each sample to about min_time
        fn()
        start = time.perf_counter()
        fn()
        sync()
        calls[name] = max(1, round(min_time / (time.perf_counter() - start)))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for name in order:
            start = time.perf_counter()
            for _ in range(calls[name]):
                candidates[name]()
            sync()
            times[name].append((time.perf_counter() - start) / calls[name])
    return times


def ratio(times: dict[str, list[float]], name: str, to: str) -> float:
    """Median over rounds of the time of ``name`` divided by that of ``to``."""
    pairs = zip(times[name], times[to], strict=True)
    return statistics.median(a / b for a, b in pairs)


def machine(device: str) -> str:
    return f"# {describe_machine(device)}\n"


class Goals:
    """Prints goals as a checklist and remembers the missed ones."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def check(self, ok: bool, text: str) -> None:
        print(f"- [{'x' if ok else ' '}] {text}")
        if not ok:
            self.missed.append(text)
