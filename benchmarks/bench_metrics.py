"""Calibration metrics and temperature fits against other implementations (the anchors), against
a plain softmax (the floor: every metric reads the logits once), how their cost grows with N and
C, and their peak memory.

    python benchmarks/bench_metrics.py                  # anchors: paper-style code, torchmetrics
    /tmp/benchv/bin/python benchmarks/bench_metrics.py  # every anchor (see docs/benchmarks.md)
    python benchmarks/bench_metrics.py --sizes 1000x10 --rounds 2 --memory-size 100000x10
    python benchmarks/bench_metrics.py --no-anchors --no-equivalents --no-memory --growth

Sections, each a Markdown table:
1. Anchors (``--no-anchors`` skips it; ``--anchors paper,netcal`` picks them): ECE, MCE, AdaECE,
   Classwise-ECE and the two temperature fits at 1 000 x 10, 10 000 x 100, 100 000 x 1 000 and
   1 000 000 x 100; a cell is the anchor's time over focalcal's (> 1: focalcal faster). Then
   every anchor's value against focalcal's on the same data, within a tolerance that its
   definition allows (_anchors.py says where each definition differs).
2. Softmax-equivalents (``--no-equivalents``): each metric's time over one ``torch.softmax`` of
   the same logits, at 10 000 x 100 and 1 000 000 x 100.
3. Growth (``--growth``): ns per logit (time / (N·C)) for N in 1e3..1e6 and C in 10..1 000;
   sizes over ``--max-elements`` are skipped.
4. Memory (``--no-memory``): each metric's peak extra memory over the logits' size, one fresh
   subprocess per metric (bench_memory.py's measure), at ``--memory-size``.

Timing: every candidate is called once first (an anchor under a time limit: ``--limit`` seconds,
or 1.5x focalcal's first call if that is longer; a stopped anchor reads ">= k x", k = its limit
over focalcal's time). Candidates whose first call took under ``--paired-below`` seconds are then
timed in paired rounds (see _timing.py; as many as ``--budget`` seconds allow, 3 to
``--rounds``): their ratios are medians of per-round ratios. Slower ones keep their one call
(marked *). The goals of issue 17 are checked at the end; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from _anchors import (
    ADAECE,
    ANCHORS,
    CLASSWISE,
    ECE,
    MCE,
    T_GRID,
    T_NLL,
    TASKS,
    Anchor,
    Entry,
    load_anchors,
)
from _timing import Goals, machine, paired_times, ratio
from bench_calibrators import Deadline, deadline
from torch import Tensor

from focalcal.metrics import (
    adaptive_calibration_error,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from focalcal.scaling import fit_temperature

SOFTMAX = "torch softmax (floor)"
ANCHOR_SIZES = ((1_000, 10), (10_000, 100), (100_000, 1_000), (1_000_000, 100))
EQUIVALENT_SIZES = ((10_000, 100), (1_000_000, 100))
GROWTH_SIZES = tuple((n, c) for n in (1_000, 10_000, 100_000, 1_000_000) for c in (10, 100, 1_000))
LIMIT_FACTOR = 1.5  # an anchor may run this many times focalcal's first call, at least
ONE_CHUNK_MAX = 10**7  # the one-chunk rows (section 2) only up to this many logits
TOLERANCE = 1e-4  # |anchor - focalcal| allowed beyond what the definitions allow (float32 sums)
NLL_TOLERANCE = 1e-4  # nats between the NLLs at the two fitted temperatures
MEMORY_METRICS = ("ece", "mce", "adaece", "classwise_ece", "calibration_report")


class Checks(list[tuple[bool, str]]):
    """The goals, (met, text), kept for the checklist at the end (_timing.Goals prints at once)."""

    def check(self, ok: bool, text: str) -> None:
        self.append((ok, text))


FOCALCAL: dict[str, Callable[[Tensor, Tensor], Any]] = {
    ECE: expected_calibration_error,
    MCE: maximum_calibration_error,
    ADAECE: adaptive_calibration_error,
    CLASSWISE: classwise_calibration_error,
    T_NLL: functools.partial(fit_temperature, objective="nll"),
    T_GRID: functools.partial(fit_temperature, objective="ece"),
}
EQUIVALENT_GOALS = {  # issue 17: softmax-equivalents at most (the NLL fit: below)
    "focalcal ECE": 3,
    "focalcal AdaECE": 3,
    "focalcal Classwise-ECE": 10,
    "focalcal calibration_report": 25,
    "focalcal fit_temperature ece (grid)": 40,
}


def data(n: int, c: int, device: str) -> tuple[Tensor, Tensor]:
    """Logits 3·N(0, 1), labels drawn from softmax(s·logits) with s = 0.5 where the top
    probability is above 0.5 (over-confident there) and 2 below (under-confident): the bins'
    gaps differ in sign, so a different binning gives a different value (were every bin
    over-confident, ECE would be mean confidence - accuracy whatever the bins)."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(n, c, generator=g)
    probs = torch.softmax(logits, dim=1)
    scale = torch.where(probs.amax(dim=1, keepdim=True) > 0.5, 0.5, 2.0)
    probs = torch.softmax(logits * scale, dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return logits.to(device), labels.to(device)


def size_name(n: int, c: int) -> str:
    return f"{n:,} × {c:,}".replace(",", " ")


# --- timing -------------------------------------------------------------------------------------


@dataclass
class Timed:
    status: str = "ok"  # or "stopped at ... s", "failed: ..."
    times: list[float] = field(default_factory=list)  # s per call: one per paired round, or one
    paired: bool = False
    value: Any = None  # the first call's result
    limit: float = math.inf

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def first_call(fn: Callable[[], Any], limit: float, sync: Callable[[], object]) -> Timed:
    result = Timed(limit=limit)
    try:
        with deadline(limit) if math.isfinite(limit) else contextlib.nullcontext():
            start = time.perf_counter()
            result.value = fn()
            sync()
            result.times = [time.perf_counter() - start]
    except Deadline:
        result.status = f"stopped at {limit:.3g} s"
    except Exception as error:  # a library's failure is a result too
        result.status = f"failed: {type(error).__name__}: {str(error)[:100]}"
    return result


def measure(
    candidates: dict[str, Callable[[], Any]],
    args: argparse.Namespace,
    sync: Callable[[], object],
    limited: Collection[str] = (),
) -> dict[str, Timed]:
    """One first call of every candidate: those not ``limited`` first, without a limit, then the
    ``limited`` ones, each under the larger of ``--limit`` and ``LIMIT_FACTOR`` times the slowest
    unlimited one. Then the calls under ``--paired-below`` seconds again, in paired rounds."""
    results = {
        n: first_call(fn, math.inf, sync) for n, fn in candidates.items() if n not in limited
    }
    slowest = max((r.times[0] for r in results.values() if r.times), default=0.0)
    limit = max(args.limit, LIMIT_FACTOR * slowest)
    results.update({n: first_call(candidates[n], limit, sync) for n in candidates if n in limited})
    cheap = [n for n, r in results.items() if r.times and r.times[0] < args.paired_below]
    if cheap and args.rounds > 0:
        per_round = sum(max(results[n].times[0], args.min_time) for n in cheap)
        rounds = min(args.rounds, max(3, int(args.budget / per_round)))
        times = paired_times({n: candidates[n] for n in cheap}, rounds, args.min_time, sync)
        for n in cheap:
            results[n].times, results[n].paired = times[n], True
    return {n: results[n] for n in candidates}


def speed_ratio(slow: Timed, fast: Timed) -> float:
    """``slow``'s time over ``fast``'s: the median of per-round ratios where both were paired."""
    if slow.paired and fast.paired:
        return ratio({"a": slow.times, "b": fast.times}, "a", "b")
    return slow.median / fast.median


def one_call(*results: Timed) -> str:
    return "*" if any(not r.paired for r in results) else ""


def seconds(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def warm_up(anchors: Sequence[Anchor], device: str) -> None:
    """Every call once on a few rows, so that no timed call pays for a first use (lazy imports,
    autograd's and scipy's start-up)."""
    logits, labels = data(256, 10, device)
    fns = [*FOCALCAL.values(), calibration_report]
    fns += [e.call for a in anchors for e in a.entries.values()]
    calls = [lambda: torch.softmax(logits, dim=1)]
    calls += [functools.partial(fn, logits, labels) for fn in fns]
    for call in calls:
        with contextlib.suppress(Exception, Deadline), deadline(30):
            call()


# --- 1. anchors ---------------------------------------------------------------------------------


@dataclass
class Cell:
    speed: str  # anchor ÷ focalcal
    agreement: str  # |anchor - focalcal|, or why there is none


def agreement(
    task: str, entry: Entry, mine: Any, theirs: Any, logits: Tensor, labels: Tensor
) -> tuple[str, bool, str]:
    """(the cell, within tolerance, what was compared) for one anchor's value against focalcal's."""
    if task == T_NLL:
        nll = [float(negative_log_likelihood(logits / t, labels)) for t in (theirs, mine)]
        delta, tol = abs(nll[0] - nll[1]), NLL_TOLERANCE
        text = f"ΔNLL {delta:.1e} (T {theirs:.4f}, focalcal {mine:.4f})"
    elif task == T_GRID:
        if abs(theirs - mine) <= 1e-6:
            return f"same T ({mine:g})", True, "T"
        ece = [float(expected_calibration_error(logits / t, labels)) for t in (theirs, mine)]
        delta, tol = abs(ece[0] - ece[1]), TOLERANCE  # a tie between two T of the grid
        text = f"T {theirs:g} vs {mine:g}, ΔECE {delta:.1e}"
    else:
        delta = abs(float(theirs) - float(mine))
        tol = TOLERANCE + 2 * entry.moved / len(labels)  # a moved sample: <= 2/N
        text = f"{delta:.1e}"
    ok = delta <= tol
    if not ok:
        text += " ✗" if entry.expect_equal else " (differs by design)"
    return text, ok, f"{delta:.2g} > {tol:.2g}"


def anchors_section(
    anchors: Sequence[Anchor],
    sizes: Sequence[tuple[int, int]],
    args: argparse.Namespace,
    sync: Callable[[], object],
    goals: Checks,
) -> None:
    names = [a.name for a in anchors]
    print("## 1. Against the anchors\n")
    for a in anchors:
        print(f"- {a.name}: {a.unavailable or a.version}")
    print(flush=True)
    rows: list[tuple[str, str, str, dict[str, Cell]]] = []
    disagreements: list[str] = []
    for n, c in sizes:
        logits, labels = data(n, c, args.device)
        size = size_name(n, c)
        for task in TASKS:
            entries = {a.name: a.entries[task] for a in anchors if task in a.entries}
            candidates = {"focalcal": functools.partial(FOCALCAL[task], logits, labels)}
            candidates |= {k: functools.partial(e.call, logits, labels) for k, e in entries.items()}
            start = time.perf_counter()
            results = measure(candidates, args, sync, limited=entries)
            print(f"# {task} at {size}: {time.perf_counter() - start:.0f} s", flush=True)
            mine = results["focalcal"]
            cells, faster = {}, []
            for a in anchors:
                if a.unavailable:
                    cells[a.name] = Cell("not installed", "")
                    continue
                if a.name not in entries:
                    cells[a.name] = Cell("—", "")
                    continue
                r = results[a.name]
                if mine.status != "ok":
                    cells[a.name] = Cell("—", "")
                elif r.status == "ok":
                    k = speed_ratio(r, mine)
                    faster.append((a.name, k, f"{k:.3g}×"))
                    text, ok, why = agreement(task, entries[a.name], mine.value, r.value,
                                              logits, labels)  # fmt: skip
                    cells[a.name] = Cell(f"{k:.3g}×{one_call(r, mine)}", text)
                    if not ok and entries[a.name].expect_equal:
                        disagreements.append(f"{task}, {size}, {a.name}: {why}")
                elif r.status.startswith("stopped"):
                    k = r.limit / mine.median
                    faster.append((a.name, k, f"≥ {k:.3g}×"))
                    cells[a.name] = Cell(f"≥ {k:.3g}× ({r.status})", r.status)
                else:
                    cells[a.name] = Cell(r.status, r.status)
            time_text = seconds(mine.median) if mine.status == "ok" else mine.status
            rows.append((task, size, time_text, cells))
            if mine.status != "ok":
                goals.check(False, f"{task}, {size}: focalcal {mine.status}")
            elif faster:
                listed = ", ".join(f"{name} {text}" for name, _, text in faster)
                goals.check(all(k > 1 for _, k, _ in faster),
                            f"{task}, {size}: focalcal faster than {listed}")  # fmt: skip
        del logits, labels

    print("\n### Time: anchor ÷ focalcal (> 1: focalcal faster)\n")
    print("| task | N × C | focalcal |", " | ".join(names), "|")
    print("|---|---|---:|" + "---:|" * len(names))
    for task, size, time_text, cells in rows:
        print(f"| {task} | {size} | {time_text} |", " | ".join(cells[k].speed for k in names), "|")
    print(
        "\n\\* one call of each (over --paired-below); others: median of paired rounds. "
        "— : the anchor does not offer the task. ≥ k×: the anchor was stopped at its limit."
    )
    print("\n### Values: |anchor - focalcal| on the same data\n")
    print("| task | N × C |", " | ".join(names), "|")
    print("|---|---|" + "---|" * len(names))
    for task, size, _, cells in rows:
        print(f"| {task} | {size} |", " | ".join(cells[k].agreement for k in names), "|")
    print(
        f"\nTolerance: {TOLERANCE:g} + 2m/N, m = the samples an anchor's bins may hold "
        "otherwise than focalcal's by definition (equal-mass rules: 2 per edge); temperatures: "
        f"the NLLs at both T within {NLL_TOLERANCE:g} nats, or the same grid T (or a tie in "
        f"ECE within {TOLERANCE:g}). ✗: outside it.\n"
    )
    print("### Definitions\n")
    for a in anchors:
        if a.unavailable:
            continue
        print(f"**{a.name}** ({a.version})\n")
        for task, e in a.entries.items():
            print(f"- {task}: `{e.api}`. {e.differences}")
        for task, why in a.absent.items():
            print(f"- {task}: {why}.")
        print()
    goals.check(
        not disagreements,
        "every anchor's value equals focalcal's within its tolerance"
        + (f"; not: {'; '.join(disagreements)}" if disagreements else ""),
    )


# --- 2. softmax-equivalents ---------------------------------------------------------------------


def one_chunk(
    metric: Callable[..., object], logits: Tensor, labels: Tensor
) -> Callable[[], object]:
    """``metric`` reading the logits in one chunk (as before issue 13 bounded its memory)."""
    import focalcal.metrics._inputs as inputs

    def call() -> object:
        chunk, inputs.CHUNK_ELEMENTS = inputs.CHUNK_ELEMENTS, logits.numel()
        try:
            return metric(logits, labels)
        finally:
            inputs.CHUNK_ELEMENTS = chunk

    return call


def chunked_metrics() -> bool:
    """Whether the metrics still read their input in chunks of ``CHUNK_ELEMENTS``."""
    try:
        import focalcal.metrics._inputs as inputs
    except ImportError:
        return False
    return hasattr(inputs, "CHUNK_ELEMENTS")


def equivalents(logits: Tensor, labels: Tensor, torchmetrics: Anchor | None) -> dict[str, Any]:
    candidates: dict[str, Callable[[], Any]] = {SOFTMAX: lambda: torch.softmax(logits, dim=1)}
    if torchmetrics is not None and ECE in torchmetrics.entries:
        candidates["torchmetrics ECE"] = functools.partial(
            torchmetrics.entries[ECE].call, logits, labels
        )
    for name, fn in (
        ("ECE", expected_calibration_error),
        ("MCE", maximum_calibration_error),
        ("AdaECE", adaptive_calibration_error),
        ("Classwise-ECE", classwise_calibration_error),
        ("calibration_report", calibration_report),
    ):
        candidates[f"focalcal {name}"] = functools.partial(fn, logits, labels)
    candidates["focalcal fit_temperature nll"] = functools.partial(FOCALCAL[T_NLL], logits, labels)
    candidates["focalcal fit_temperature ece (grid)"] = functools.partial(
        FOCALCAL[T_GRID], logits, labels
    )
    if chunked_metrics() and logits.numel() <= ONE_CHUNK_MAX:
        for name, fn in (("Classwise-ECE", classwise_calibration_error),
                         ("calibration_report", calibration_report)):  # fmt: skip
            candidates[f"focalcal {name}, one chunk"] = one_chunk(fn, logits, labels)
    return candidates


def equivalents_section(
    sizes: Sequence[tuple[int, int]],
    args: argparse.Namespace,
    sync: Callable[[], object],
    goals: Checks,
    torchmetrics: Anchor | None,
) -> None:
    print("\n## 2. Softmax-equivalents: time ÷ one torch.softmax of the same logits\n")
    columns: dict[str, dict[str, Timed]] = {}
    for n, c in sizes:
        logits, labels = data(n, c, args.device)
        start = time.perf_counter()
        columns[size_name(n, c)] = measure(
            equivalents(logits, labels, torchmetrics), args, sync, limited={"torchmetrics ECE"}
        )
        print(f"# softmax-equivalents at {size_name(n, c)}: "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        del logits, labels
    names = list(dict.fromkeys(k for results in columns.values() for k in results))
    print("\n| |", " | ".join(columns), "|")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = []
        for results in columns.values():
            r, floor = results.get(name), results[SOFTMAX]
            if r is None:
                cells.append("not run")
            elif r.status != "ok":
                cells.append(r.status)
            else:
                k = speed_ratio(r, floor)
                cells.append(f"{k:.3g}{one_call(r, floor)} ({seconds(r.median)})")
        print(f"| {name} |", " | ".join(cells), "|")
    print("\n\\* one call (over --paired-below), divided by the softmax's median time.")
    if not chunked_metrics():
        print("The one-chunk rows are gone: the metrics no longer read their input in chunks.")
    elif any(n * c > ONE_CHUNK_MAX for n, c in sizes):
        print(f"The one-chunk rows only up to {ONE_CHUNK_MAX:.0e} logits.")
    for size, results in columns.items():
        floor = results[SOFTMAX]
        bounds = [*EQUIVALENT_GOALS.items(), ("focalcal fit_temperature nll", 20)]
        for name, bound in bounds:
            r = results[name]
            if r.status != "ok":
                goals.check(False, f"{size}: {name} {r.status}")
                continue
            k = speed_ratio(r, floor)
            strict = name.endswith("nll")  # issue 3's goal: below 20
            ok = k < bound if strict else k <= bound
            sign = "<" if strict else "<="
            goals.check(ok, f"{size}: {name} = {k:.3g} softmax-equivalents {sign} {bound}")


# --- 3. growth ----------------------------------------------------------------------------------


def growth_section(
    sizes: Sequence[tuple[int, int]], args: argparse.Namespace, sync: Callable[[], object]
) -> None:
    tasks = {
        "softmax": lambda z, y: torch.softmax(z, dim=1),
        ECE: FOCALCAL[ECE],
        ADAECE: FOCALCAL[ADAECE],
        CLASSWISE: FOCALCAL[CLASSWISE],
        "calibration_report": calibration_report,
        T_NLL: FOCALCAL[T_NLL],
        T_GRID: FOCALCAL[T_GRID],
    }
    print("\n## 3. Growth: ns per logit, time ÷ (N·C)\n")
    print("| N × C |", " | ".join(tasks), "|")
    print("|---|" + "---:|" * len(tasks))
    for n, c in sizes:
        if n * c > args.max_elements:
            why = f"skipped: {n * c:.0e} logits ({n * c * 4 / 2**30:.3g} GiB) > --max-elements"
            print(f"| {size_name(n, c)} | {why} |" + " |" * (len(tasks) - 1), flush=True)
            continue
        logits, labels = data(n, c, args.device)
        candidates = {k: functools.partial(fn, logits, labels) for k, fn in tasks.items()}
        results = measure(candidates, args, sync)
        cells = [
            f"{r.median / (n * c) * 1e9:.3g}{one_call(r)}" if r.status == "ok" else r.status
            for r in results.values()
        ]
        print(f"| {size_name(n, c)} |", " | ".join(cells), "|", flush=True)
        del logits, labels
    print("\n\\* one call (over --paired-below); others: median of paired rounds.")


# --- 4. memory ----------------------------------------------------------------------------------


def memory_section(n: int, c: int, goals: Checks) -> None:
    print(f"\n## 4. Peak extra memory ÷ the float32 logits, {size_name(n, c)}\n")
    try:
        from bench_memory import in_subprocess
    except Exception as error:  # bench_memory.py follows the metrics' internals
        print(f"Not measured: bench_memory.py does not load ({type(error).__name__}: {error}).")
        return
    print("| metric | peak extra | ÷ logits |")
    print("|---|---:|---:|")
    for metric in MEMORY_METRICS:
        m = in_subprocess(metric, n, c, one_pass=False, live=True)
        k = m["extra"] / m["input"]
        print(f"| {metric} | {m['extra'] / 2**20:,.0f} MiB | {k:.2f}x |", flush=True)
        goals.check(k <= 2, f"{metric} at {size_name(n, c)}: extra = {k:.2f}x the logits <= 2")


# --- main ---------------------------------------------------------------------------------------


def sizes_arg(text: str) -> list[tuple[int, int]]:
    """'1000x10,1e4x100' -> [(1000, 10), (10000, 100)]."""
    sizes = []
    for item in text.split(","):
        n, _, c = item.strip().lower().partition("x")
        sizes.append((int(float(n)), int(float(c))))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=sizes_arg, help="N x C list for every section run")
    parser.add_argument("--anchors", default=",".join(ANCHORS), help="comma-separated")
    parser.add_argument("--no-anchors", action="store_true", help="skip section 1")
    parser.add_argument("--no-equivalents", action="store_true", help="skip section 2")
    parser.add_argument("--growth", action="store_true", help="run section 3")
    parser.add_argument("--no-memory", action="store_true", help="skip section 4")
    parser.add_argument("--memory-size", type=sizes_arg, default=[(1_000_000, 100)])
    parser.add_argument("--rounds", type=int, default=15, help="paired rounds, at most")
    parser.add_argument("--budget", type=float, default=5.0, help="s of paired rounds per table")
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--paired-below", type=float, default=0.5, help="s per first call")
    parser.add_argument("--limit", type=float, default=10.0, help="s per anchor call, at least")
    parser.add_argument("--max-elements", type=float, default=1e8, help="growth: N·C at most")
    args = parser.parse_args()
    unknown = set(args.anchors.split(",")) - set(ANCHORS)
    if unknown:
        parser.error(f"--anchors: unknown {sorted(unknown)}; known: {', '.join(ANCHORS)}")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    logging.disable(logging.WARNING)  # torch-uncertainty warns on every fit without a model
    print(machine(args.device))
    start, goals = time.perf_counter(), Checks()

    anchors = load_anchors(args.anchors.split(","))
    warm_up([] if args.no_anchors else anchors, args.device)
    if not args.no_anchors:
        anchors_section(anchors, args.sizes or ANCHOR_SIZES, args, sync, goals)
    if not args.no_equivalents:
        torchmetrics = next((a for a in anchors if a.name == "torchmetrics"), None)
        torchmetrics = torchmetrics or ANCHORS["torchmetrics"]()
        equivalents_section(args.sizes or EQUIVALENT_SIZES, args, sync, goals, torchmetrics)
    if args.growth:
        growth_section(args.sizes or GROWTH_SIZES, args, sync)
    if not args.no_memory:
        memory_section(*args.memory_size[0], goals)

    print(f"\n## Goals (issue 17; {time.perf_counter() - start:.0f} s in all)\n")
    checklist = Goals()
    for ok, text in goals:
        checklist.check(ok, text)
    return 1 if checklist.missed else 0


if __name__ == "__main__":
    sys.exit(main())
