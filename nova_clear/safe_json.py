"""JSON from untrusted sources (image archives, update mirrors), bounded.

``json.loads`` reads any size and recurses once per nesting level, so a
small hostile document either takes the memory it likes or ends in a
``RecursionError`` traceback.  :func:`loads` refuses both first, with a
one-line :class:`JSONRefused` (a ``ValueError``, as ``json.loads``' own
errors are).
"""

import json
import re

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 4 * MiB
DEFAULT_MAX_DEPTH = 64

# strings (with escapes) go first, so brackets inside them do not count
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class JSONRefused(ValueError):
    pass


def nesting_depth(data, limit):
    """The deepest nesting of arrays/objects in ``data`` (bytes), counting
    only up to ``limit + 1``."""
    depth = deepest = 0
    for m in _TOKENS.finditer(data):
        c = m.group()
        if c in (b'[', b'{'):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif c in (b']', b'}'):
            depth -= 1
    return deepest


def loads(data, max_bytes=DEFAULT_MAX_BYTES, max_depth=DEFAULT_MAX_DEPTH):
    """Parse ``data`` (bytes or str) refusing more than ``max_bytes`` or a
    nesting deeper than ``max_depth``."""
    if isinstance(data, str):
        data = data.encode('utf-8', 'surrogatepass')
    if len(data) > max_bytes:
        raise JSONRefused('JSON document of %d bytes (at most %d)' %
                          (len(data), max_bytes))
    if nesting_depth(data, max_depth) > max_depth:
        raise JSONRefused('JSON nested deeper than %d levels' % max_depth)
    try:
        return json.loads(data)
    except RecursionError:  # pragma: no cover - the scan above prevents it
        raise JSONRefused('JSON nested too deeply') from None
