"""``python -m tracekit``: the CLI.

Signals that land while the interpreter is still importing the CLI (before it installs its own
handlers) end the process with the same one line as later ones, and nothing has been written yet.
"""

import signal
import sys


def _early(signum, frame):
    sys.stderr.write("Error: interrupted\n" if signum == signal.SIGINT else "Error: terminated\n")
    raise SystemExit(128 + signum)


signal.signal(signal.SIGINT, _early)
signal.signal(signal.SIGTERM, _early)

from tracekit.cli import main  # noqa: E402

main()
