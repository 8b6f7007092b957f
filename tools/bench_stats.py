"""Statistics shared by the benchmarks (tools/bench_*.py)."""

import statistics


def summary(values):
    """median/min/max/n of the measured values; ``failures`` counts the
    runs that produced none (None).  None if nothing was measured."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {'median': round(statistics.median(vals), 3),
            'min': round(min(vals), 3), 'max': round(max(vals), 3),
            'n': len(vals), 'failures': len(values) - len(vals)}
