"""The what-ifs of ``tracekit explain`` against the steps they predict, over one calibration
campaign (``capture/calibration_campaign.sh``): per model and context, the default-SDPA eager
trace predicts

* "without the stalls" — measured by the flash-SDPA capture (its sessions' median, and each
  session's median: other processes, whose host may run at another speed), and by the eager
  capture's own calibration steps (flash forced, unprofiled, in the very process the trace was
  taken in);
* the CUDA-Graphs step of the same kernels (the default what-if) — measured by the ``replay``
  arm, the eager step's own kernels replayed as one CUDA graph (its profiled step period: the
  what-if is a profiled number too);
* the CUDA-Graphs step of the graph program itself (``--graph-trace`` with the cuda-graphs
  capture) — measured by the cuda-graphs capture's unprofiled median. The same-kernels what-if
  is shown against it as well, but not counted: that is another program (HF's static cache).

Each row says the prediction, its interval, the measurement, the error and whether the interval
covers it; a trace that cannot be explained is a row with its error. Markdown on stdout, then a
summary: how many intervals hold their measurement, and how many what-ifs are within ±20%
("without the stalls") and ±15% (CUDA Graphs) of it. Every flash session is a process of its own,
so "without the stalls" is also counted against each one, and the summary ends with how well the
measurement reproduces itself — one flash session's median against another's of the same capture,
and the stall-free step the eager capture's own process ran against each flash session: where the
host's speed moves from process to process, no prediction from one process can come closer to
another process than the measurements do to each other.

    python analyses/whatif_check.py /path/to/campaign/dir [more dirs of the same kind]
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
from pathlib import Path

from tracekit.errors import TracekitError
from tracekit.explain import explain
from tracekit.trace.capture_meta import read_capture_meta

ARM = re.compile(r"(?P<cfg>.+)_(?P<arm>eager|flash|graphs|replay)\.json\.gz$")


def measured(path: Path) -> tuple[float | None, list[float]]:
    """(median over sessions of each session's median, the session medians) of a capture."""
    meta = read_capture_meta(path) or {}
    medians = (meta.get("timing_sessions") or {}).get("session_medians_ms") or [
        (meta.get("timing") or {}).get("median_ms")]
    medians = [m for m in medians if m is not None]
    return (statistics.median(medians) if medians else None), medians


#: how close each what-if must come to its measurement (the done-means of the what-ifs)
TARGET_PCT = {"without the stalls, same process": 20.0, "without the stalls": 20.0,
              "CUDA Graphs": 15.0}


def profiled_step(path: Path) -> tuple[float | None, str]:
    """The median step period of a trace as ``tracekit explain`` measures it (profiled), or None
    and why."""
    try:
        return explain(path).to_dict()["summary"].get("latency_ms"), ""
    except TracekitError as exc:
        return None, f"; cannot explain it: {str(exc)[:120]}"


def row(name: str, pred: float | None, iv: list | None, meas: float | None, note: str,
        tally: dict[str, list] | None) -> str:
    """One table row; ``tally`` collects (what-if kind, error % or None, covered) for the summary
    (None: a row shown, not counted). A measured case with no prediction counts as a miss; a case
    with no measurement is no case."""
    kind = next(k for k in TARGET_PCT if name.startswith(k))
    if pred is None or meas is None:
        if tally is not None and meas is not None:
            tally.setdefault(kind, []).append((None, False))
        return f"| {name} | n/a | n/a | {meas if meas is not None else 'n/a'} | | | {note} |"
    err = 100 * (pred / meas - 1)
    ivs = f"{iv[0]:.2f}–{iv[1]:.2f}" if iv else "n/a"
    covered = bool(iv and iv[0] <= meas <= iv[1])
    if tally is not None:
        tally.setdefault(kind, []).append((err, covered))
    return (f"| {name} | {pred:.2f} | {ivs} | {meas:.2f} | {err:+.1f}% | "
            f"{'yes' if covered else 'no'} | {note} |")


def summary(tally: dict[str, list]) -> list[str]:
    """How many intervals hold their measurement, and how many what-ifs are within target."""
    cases = [c for rows in tally.values() for c in rows]
    out = [f"intervals holding the measured value: {sum(c for _, c in cases)} of {len(cases)}"]
    for kind, rows in tally.items():
        ok = sum(e is not None and abs(e) <= TARGET_PCT[kind] for e, _ in rows)
        out.append(f"{kind}: {ok} of {len(rows)} within ±{TARGET_PCT[kind]:.0f}%, interval "
                   f"holding it {sum(c for _, c in rows)} of {len(rows)}")
    return out


def _within(a: float, b: float, pct: float = TARGET_PCT["without the stalls"]) -> bool:
    return abs(100 * (a / b - 1)) <= pct


def per_session(pred: float | None, iv: list | None, sessions: list[float],
                own: float | None, counts: dict[str, list[bool]]) -> None:
    """Counts over every flash session (each a process): the what-if within target and its
    interval holding it; how often one session's median is within target of another's (ordered
    pairs); how often the eager process's own stall-free step is within target of each."""
    for s in sessions:
        counts["within"].append(pred is not None and _within(pred, s))
        counts["covered"].append(bool(iv and iv[0] <= s <= iv[1]))
        if own is not None:
            counts["own"].append(_within(own, s))
    counts["pairs"] += [_within(a, b) for a, b in itertools.permutations(sessions, 2)]


def reproducibility(counts: dict[str, list[bool]]) -> list[str]:
    if not counts["within"]:
        return []
    n = TARGET_PCT["without the stalls"]

    def frac(xs: list[bool]) -> str:
        return f"{sum(xs)} of {len(xs)}"

    out = [f"without the stalls against each flash session (each a process): {frac(counts['within'])}"
           f" within ±{n:.0f}%, interval holding it {frac(counts['covered'])}"]
    if counts["pairs"]:
        out.append(f"the measurement itself: one flash session's median within ±{n:.0f}% of "
                   f"another's of the same capture in {frac(counts['pairs'])} ordered pairs")
    if counts["own"]:
        out.append(f"the stall-free step measured in the eager capture's own process within "
                   f"±{n:.0f}% of each flash session: {frac(counts['own'])}")
    return out


def check(folders: list[Path]) -> list[str]:
    arms: dict[str, dict[str, Path]] = {}
    for folder in folders:
        for p in sorted(folder.glob("*.json.gz")):
            if m := ARM.match(p.name):
                cfg = m["cfg"] if len(folders) == 1 else f"{m['cfg']}, {folder.name}"
                arms.setdefault(cfg, {})[m["arm"]] = p
    lines = ["| what-if (model, ctx) | predicted ms | interval | measured ms | error | covered | "
             "note |", "|---|---|---|---|---|---|---|"]
    tally: dict[str, list] = {}
    counts: dict[str, list[bool]] = {"within": [], "covered": [], "own": [], "pairs": []}
    for cfg, got in arms.items():
        eager = got.get("eager")
        if eager is None:
            continue
        graphs = got.get("graphs")
        try:
            default = explain(eager).to_dict()
            program = explain(eager, graph_trace=graphs).to_dict() if graphs else None
        except TracekitError as exc:
            lines.append(f"| {cfg} | | | | | | cannot explain: {str(exc)[:160]} |")
            continue
        w = (default.get("unprofiled") or {}).get("whatif") or {}
        g = default.get("whatif") or {}  # the CUDA-Graphs what-if: the same in both sections
        src = (default.get("unprofiled") or {}).get("calibration_source")
        # the stall-free step the eager capture's own process ran (its calibration, flash
        # forced, unprofiled), as explain reports it beside the what-if
        own = ((default.get("unprofiled") or {}).get("stall_free_measured") or {}).get("ms")
        if "flash" in got:
            meas, sessions = measured(got["flash"])
            lines.append(row(f"without the stalls ({cfg})", w.get("no_stalls_ms"),
                             w.get("no_stalls_interval_ms"), meas,
                             f"calibration {src}; flash sessions "
                             + ", ".join(f"{s:.1f}" for s in sessions), tally))
            per_session(w.get("no_stalls_ms"), w.get("no_stalls_interval_ms"), sessions, own,
                        counts)
        if own is not None:
            lines.append(row(f"without the stalls, same process ({cfg})", w.get("no_stalls_ms"),
                             w.get("no_stalls_interval_ms"), own,
                             "the eager capture's own calibration steps (flash, unprofiled)",
                             tally))
        if "replay" in got:
            meas, why = profiled_step(got["replay"])
            lines.append(row(f"CUDA Graphs, same kernels ({cfg})", g.get("cuda_graphs_ms"),
                             g.get("cuda_graphs_interval_ms"), meas,
                             "the eager kernels replayed as one graph (profiled step)" + why,
                             tally))
        if graphs is not None:
            meas, _ = measured(graphs)
            lines.append(row(f"CUDA Graphs, same kernels vs HF's graph ({cfg})",
                             g.get("cuda_graphs_ms"), g.get("cuda_graphs_interval_ms"), meas,
                             "another program: not counted", None))
            pw = (program or {}).get("whatif") or {}
            lines.append(row(f"CUDA Graphs, graph program ({cfg})", pw.get("cuda_graphs_ms"),
                             pw.get("cuda_graphs_interval_ms"), meas, "--graph-trace", tally))
    return lines + ["", *summary(tally), *reproducibility(counts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, nargs="+",
                    help="a campaign's output (the traces, untarred); several are read together")
    folders = ap.parse_args().folder
    for folder in folders:
        if not any(ARM.match(p.name) for p in (folder.glob("*.json.gz") if folder.is_dir()
                                                else ())):
            sys.exit(f"Error: {folder} holds no campaign traces (NAME_eager.json.gz, "
                     "NAME_flash..., NAME_graphs...): untar the campaign's output and pass its "
                     "folder")
    print("\n".join(check(folders)))


if __name__ == "__main__":
    main()
