"""How far this host's launch speed moves — per CPU and per fresh process — from the JSON lines
of ``capture/host_probe.py`` (``PROBE=... capture/calibration_campaign.sh`` writes
``probe.jsonl``).

Prints, in Markdown: each CPU's µs per launch over the two sweep passes (the thread pinned to
it); then, per CPU policy, each fresh process's median µs per launch and its pure-Python loop,
with the spread (slowest ÷ fastest process) and the run-queue wait and steal over its timings.
A host whose fresh processes launch at one speed cannot explain a 2× spread of their decode
steps by launch speed; one whose slow processes sat on slow CPUs can.

    python analyses/host_probe_summary.py /path/to/probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", type=Path, help="probe.jsonl")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.probe.read_text().splitlines() if line.strip()]
    for row in rows:
        if "sweep" in row:
            print("| CPU | µs per launch, pass 1 | pass 2 |\n|---|---|---|")
            for cpu, vals in row["sweep"].items():
                print(f"| {cpu} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
            meds = [statistics.median(v) for v in row["sweep"].values()]
            print(f"\nacross CPUs: {min(meds):.2f}–{max(meds):.2f} µs per launch "
                  f"(slowest ÷ fastest {max(meds) / min(meds):.2f})\n")
    by_policy: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if "sweep" not in row:
            by_policy[row["label"] or "none"].append(row)
    print("| policy | process | CPU (start, end) | µs per launch (median) | python loop ms | "
          "run-queue wait ms | steal jiffies |\n|---|---|---|---|---|---|---|")
    for policy, procs in by_policy.items():
        for p in procs:
            waited = (p.get("schedstat_ns") or [None, None])[1]
            wait = waited / 1e6 if waited is not None else float("nan")
            print(f"| {policy} | {p['pid']} | {p['cpu'][0]}, {p['cpu'][1]} | "
                  f"{p['launch_us_median']:.2f} | {p['python_ms_median']:.1f} | {wait:.2f} | "
                  f"{p.get('steal_jiffies')} |")
    print()
    for policy, procs in by_policy.items():
        meds = [p["launch_us_median"] for p in procs]
        py = [p["python_ms_median"] for p in procs]
        print(f"{policy}: {len(meds)} processes, µs per launch {min(meds):.2f}–{max(meds):.2f} "
              f"(slowest ÷ fastest {max(meds) / min(meds):.2f}); python loop "
              f"{min(py):.1f}–{max(py):.1f} ms ({max(py) / min(py):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
