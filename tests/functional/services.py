"""Real libvirtd + virtlogd for functional tests.

The fixture reuses running daemons.  When none runs, it starts
``virtlogd -d`` and ``libvirtd -d`` and stops them (by PID) when the last
test process using them is done: stestr runs several worker processes, so a
small reference count under a file lock decides who starts and who stops.
(Never start a second libvirtd beside a running one: on exit it removes the
running one's socket.)
"""

import atexit
import fcntl
import json
import os
import signal
import subprocess
import time

import fixtures
import libvirt

URI = 'qemu:///system'
STATE = '/run/nova-clear-functional-libvirt.json'
LOCK = STATE + '.lock'
PIDFILES = {'virtlogd': '/run/virtlogd.pid', 'libvirtd': '/run/libvirtd.pid'}


def libvirt_alive():
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _read_state():
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {'started': {}, 'users': []}


def _write_state(state):
    with open(STATE, 'w') as f:
        json.dump(state, f)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_daemons():
    started = {}
    for name in ('virtlogd', 'libvirtd'):
        pidfile = PIDFILES[name]
        if os.path.exists(pidfile):
            try:
                with open(pidfile) as f:
                    if _pid_alive(int(f.read().strip())):
                        continue
            except ValueError:
                pass
        subprocess.run([name, '-d', '--pid-file', pidfile], check=True)
        for _ in range(100):
            if os.path.exists(pidfile):
                break
            time.sleep(0.1)
        with open(pidfile) as f:
            started[name] = int(f.read().strip())
    for _ in range(100):
        if libvirt_alive():
            return started
        time.sleep(0.1)
    raise RuntimeError('libvirtd started but %s does not answer' % URI)


_acquired = False


def ensure_libvirt():
    """Make sure libvirtd answers at qemu:///system until this process exits.

    The last test process to exit stops what the tests started.
    """
    global _acquired
    if _acquired and libvirt_alive():
        return
    with open(LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state()
        state['users'] = [p for p in state['users'] if _pid_alive(p)]
        if not state['users']:
            state['started'] = {}
        if not libvirt_alive():
            state['started'].update(_start_daemons())
        if os.getpid() not in state['users']:
            state['users'].append(os.getpid())
        _write_state(state)
    if not _acquired:
        atexit.register(_release)
        _acquired = True


def _release():
    with open(LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state()
        state['users'] = [p for p in state['users']
                          if p != os.getpid() and _pid_alive(p)]
        if not state['users']:
            # Stop only what the tests started, libvirtd first.
            for name in ('libvirtd', 'virtlogd'):
                pid = state['started'].pop(name, None)
                if pid and _pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
        _write_state(state)


class LibvirtDaemons(fixtures.Fixture):
    """Fixture form of :func:`ensure_libvirt`."""

    def _setUp(self):
        ensure_libvirt()
