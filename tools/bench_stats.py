"""Statistics and measurements shared by the benchmarks (tools/bench_*.py)."""

import statistics
import subprocess


def summary(values):
    """median/min/max/n of the measured values; ``failures`` counts the
    runs that produced none (None).  None if nothing was measured."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {'median': round(statistics.median(vals), 3),
            'min': round(min(vals), 3), 'max': round(max(vals), 3),
            'n': len(vals), 'failures': len(values) - len(vals)}


def qemu_mem(marker, field):
    """RSS or PSS (MiB, ``field`` of smaps_rollup) of the QEMU process
    whose command line holds ``marker``."""
    out = subprocess.run(['pgrep', '-f', 'qemu-system.*%s' % marker],
                         capture_output=True, text=True).stdout.split()
    total = 0
    for pid in out:
        for line in read('/proc/%s/smaps_rollup' % pid).decode().splitlines():
            if line.startswith(field + ':'):
                total += int(line.split()[1])
    return total / 1024.0


def read(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError:
        return b''
