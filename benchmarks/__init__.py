"""Benchmarks of the whole bot, run in one process: ``python -m benchmarks.throughput``.

``IMPORTED_AT`` is the fallback origin of the cold-start clock where ``/proc`` can't say
when the process started; it is taken before anything heavy is imported.
"""

from __future__ import annotations

import time

IMPORTED_AT = time.monotonic()
