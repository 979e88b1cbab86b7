"""When to try a failed job again."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Exponential back-off with "equal jitter": uniform in [c/2, c] for
    c = min(max, base * 2^(attempt-1)).

    Half of the delay always grows, so retries do back off; the random half
    spreads the retries of many jobs that failed together (a model server
    that went down) instead of sending them back all at once.
    """
    ceiling = min(max_seconds, base_seconds * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)
