"""The boot state: which version boots, the try counter, rollback.

``<root>/boot/state`` holds ``key=value`` lines so that the boot
initramfs (``boot-init.sh``, busybox sh) reads and writes it too::

    current=12     last version known good
    previous=11    the good version before it (kept for ``rollback``)
    pending=13     version to try at the next boots, 0 for none
    tries=3        boots of ``pending`` left
    booted=12      version the initramfs chose at the last boot
    failed=0       last version rolled back after running out of tries

Every change writes a temporary file, fsyncs it and renames it over the
old one: a crash leaves the old or the new state, never a mix.
``choose_text`` is the initramfs's decision, in Python; both are tested
on the same states.  A malformed line does not stop the boot: it is
ignored, the try counter is not trusted (the pending version is dropped)
and ``current`` boots.
"""

import dataclasses
import os
import re

from nova_clear.hostos import errors
from nova_clear.hostos import store

FIELDS = ('current', 'previous', 'pending', 'tries', 'booted', 'failed')
DEFAULT_TRIES = 3
# ASCII digits only (str.isdigit() takes '²'), short enough for busybox
# sh's 64-bit arithmetic.
_VALUE = re.compile(r'[0-9]{1,18}')


@dataclasses.dataclass(frozen=True)
class BootState:
    current: int = 0
    previous: int = 0
    pending: int = 0
    tries: int = 0
    booted: int = 0
    failed: int = 0


def parse_lenient(text):
    """(state, malformed lines): what the initramfs reads."""
    values, bad = {}, []
    for line in text.split('\n'):
        key, _sep, value = line.partition('=')
        if not key or key.startswith('#'):
            continue
        if key not in FIELDS or not _VALUE.fullmatch(value):
            bad.append(line)
            continue
        values[key] = int(value)
    return BootState(**values), bad


def parse(text):
    """The state; BootStateError on any malformed line (``clear-update``
    does not guess)."""
    state, bad = parse_lenient(text)
    if bad:
        raise errors.BootStateError('malformed boot state line %r' % bad[0])
    return state


def format_state(state):
    return ''.join('%s=%d\n' % (f, getattr(state, f)) for f in FIELDS)


def state_path(root):
    return os.path.join(root, 'boot', 'state')


def read(root):
    try:
        with open(state_path(root)) as f:
            return parse(f.read())
    except FileNotFoundError:
        return BootState()


def write(root, state):
    store.write_atomic(state_path(root), format_state(state).encode())


def choose(state):
    """(version to boot, state to write): what the initramfs does."""
    if state.pending:
        if state.tries > 0:
            return state.pending, dataclasses.replace(
                state, tries=state.tries - 1, booted=state.pending)
        state = dataclasses.replace(state, failed=state.pending, pending=0,
                                    tries=0)
    return state.current, dataclasses.replace(state, booted=state.current)


def choose_text(text):
    """(version, state to write) from the state file's text, exactly as
    ``boot-state.sh``: malformed lines are ignored and then the pending
    version is not tried.  BootStateError when no valid ``current``."""
    state, bad = parse_lenient(text)
    if bad:
        state = dataclasses.replace(state, pending=0, tries=0)
    version, new = choose(state)
    if not version:
        raise errors.BootStateError('no valid current version in the boot '
                                    'state')
    return version, new


def installed(version):
    """The state of a freshly installed root: ``version`` is good."""
    return BootState(current=version, booted=version)


def check_tries(tries):
    if not (isinstance(tries, int) and not isinstance(tries, bool) and
            tries >= 1):
        raise errors.BootStateError('tries must be at least 1, not %r'
                                    % (tries,))


def set_pending(state, version, tries=DEFAULT_TRIES):
    check_tries(tries)
    if version <= state.current:
        raise errors.DowngradeError('version %d is not newer than the '
                                    'installed %d' % (version, state.current))
    return dataclasses.replace(state, pending=version, tries=tries)


def mark_good(state):
    """The booted pending version becomes current."""
    if not state.pending or state.booted != state.pending:
        if state.booted == state.current:
            return state
        raise errors.BootStateError(
            'version %d is running, neither current (%d) nor pending (%d)'
            % (state.booted, state.current, state.pending))
    return dataclasses.replace(state, previous=state.current,
                               current=state.pending, pending=0, tries=0,
                               failed=0)


def rollback(state):
    """Cancel a pending version, else go back to the previous one."""
    if state.pending:
        return dataclasses.replace(state, pending=0, tries=0)
    if not state.previous:
        raise errors.BootStateError('nothing to roll back to')
    return dataclasses.replace(state, current=state.previous,
                               previous=0)


def keep(state):
    """Versions whose snapshots must stay: running, good, pending."""
    return {v for v in (state.current, state.previous, state.pending,
                        state.booted) if v}
