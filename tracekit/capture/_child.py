"""The process Nsight Systems starts for ``--profiler nsys``: one capture from JSON options.

Not a user command: ``tracekit.capture.nsys`` runs it as
``nsys profile … python -m tracekit.capture._child '<options as JSON>'`` and reads back the
``TRACEKIT_RESULT {json}`` line it prints. Progress goes to stderr.
"""

from __future__ import annotations

import json
import sys

from tracekit.capture.nsys import RESULT_MARK
from tracekit.capture.options import CaptureOptions
from tracekit.capture.progress import Progress, RichProgress
from tracekit.capture.run import run_capture
from tracekit.errors import TracekitError
from tracekit.jsonio import json_safe


def main(argv: list[str]) -> int:
    opts = CaptureOptions.from_json_dict(json.loads(argv[0]))
    try:
        progress = Progress() if "--quiet" in argv[1:] else RichProgress()
        result = run_capture(opts, progress=progress)
    except TracekitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    line = json.dumps({"meta": json_safe(result.meta), "bytes": result.bytes}, allow_nan=False)
    print(RESULT_MARK + line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
