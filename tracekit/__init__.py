"""tracekit: where does each batch-1 decode step's time go?"""

from __future__ import annotations

__version__ = "0.1.0"
