"""Processes of the all-in-one: commands, logs, PID files, process groups,
waiting, and restarting what a changed configuration concerns.

Every service runs in the background in its own process group, its output
in ``$AIO_HOME/logs/<name>.log``, its PID (and start time, which tells it
from a later process with the same PID) in ``$AIO_HOME/run/<name>.pid``;
``stop`` ends exactly those groups.
"""

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import time

from tools.aio import settings


class Failure(Exception):
    """A step failed; ``log`` names the log file that explains it."""

    def __init__(self, msg, log=None):
        super().__init__(msg)
        self.log = log


def say(msg):
    print('[allinone %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def log_path(name):
    return os.path.join(settings.LOGS, '%s.log' % name)


def run(cmd, log=None, env=None, check=True, input=None):
    """Run a command, output appended to ``log`` (a service name)."""
    path = log_path(log or 'bootstrap')
    with open(path, 'a') as f:
        f.write('\n$ %s\n' % ' '.join(shlex.quote(c) for c in cmd))
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env=env, input=input,
                              text=True if input else None)
    if check and proc.returncode:
        raise Failure('%s exited %d' % (' '.join(cmd[:3]), proc.returncode),
                      path)
    return proc.returncode


def tail(path, lines=40):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return ''
    return '\n'.join(data[-lines:])


def log_since(name, offset):
    """The log of ``name`` from byte ``offset`` on."""
    try:
        with open(log_path(name), 'rb') as f:
            f.seek(offset)
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def log_size(name):
    try:
        return os.path.getsize(log_path(name))
    except OSError:
        return 0


def wait_for(predicate, timeout, what, log=None, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Failure:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise Failure('timed out after %ds waiting for %s%s' % (
        timeout, what, ' (last error: %s: %s)' % (type(last).__name__, last)
        if last else ''), log)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((settings.HOST, port)) == 0


def check_port_free(name, port):
    """Before starting ``name``: nobody else holds its port."""
    if not running_pid(name) and port_open(port):
        raise Failure('port %d (for %s) is taken by a process this tool '
                      'did not start; stop it or free the port'
                      % (port, name))


# -- PID files and process groups -------------------------------------------

def pidfile(name):
    return os.path.join(settings.RUN, '%s.pid' % name)


def running_pid(name):
    """PID of our ``name`` if it is still the process we started."""
    try:
        with open(pidfile(name)) as f:
            pid, token = f.read().split(None, 1)
        pid = int(pid)
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if fields[19] != token.strip():
        return None
    if fields[0] == 'Z':
        # exited; reap it when this process started it
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return pid


def start(name, cmd, env=None, cwd=None, user=None):
    """Start ``name`` unless it runs; True when it was started."""
    if running_pid(name):
        return False
    if user:
        # a name, or (uid, gid)
        uid, gid = (user, user) if isinstance(user, str) else \
            (str(user[0]), str(user[1]))
        cmd = ['setpriv', '--reuid', uid, '--regid', gid,
               '--init-groups'] + cmd
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path(name), 'a') as log:
        log.write('\n=== %s starting: %s\n' % (
            time.strftime('%Y-%m-%d %H:%M:%S'), ' '.join(cmd)))
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env,
                                cwd=cwd, start_new_session=True)
    with open('/proc/%d/stat' % proc.pid) as f:
        begun = f.read().rsplit(')', 1)[1].split()[19]
    with open(pidfile(name), 'w') as f:
        f.write('%d %s\n' % (proc.pid, begun))
    return True


def adopt(name, pid):
    """Record ``pid`` (a daemon that detached itself) as ``name``: status
    and ``running_pid`` see it like the processes ``start`` started."""
    with open('/proc/%d/stat' % pid) as f:
        begun = f.read().rsplit(')', 1)[1].split()[19]
    with open(pidfile(name), 'w') as f:
        f.write('%d %s\n' % (pid, begun))


def forget(name):
    """Drop the PID file of ``name`` once it no longer runs."""
    if not running_pid(name) and os.path.exists(pidfile(name)):
        os.unlink(pidfile(name))


def stop(name, timeout=20):
    """End the process group of ``name``; True when it ran."""
    pid = running_pid(name)
    if not pid:
        if os.path.exists(pidfile(name)):
            os.unlink(pidfile(name))
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.unlink(pidfile(name))
    return True


def stop_all(names):
    """Stop ``names`` in the reverse of their start order, saying so."""
    for name in reversed(names):
        if stop(name):
            say('stopped %s' % name)


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of our own (none: children were not ours) do not count
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            return True
    return False


def ensure_alive(name, seconds=0):
    """Fail with the service's log when it died (after ``seconds``)."""
    end = time.monotonic() + seconds
    while True:
        if not running_pid(name):
            raise Failure('%s exited' % name, log_path(name))
        if time.monotonic() >= end:
            return
        time.sleep(0.2)


def owner(pid):
    """uid of process ``pid``."""
    return os.stat('/proc/%d' % pid).st_uid


# -- WSGI apps under uWSGI ---------------------------------------------------

CHUNKED_INPUT_LIMIT = 4 * 1024 * 1024


def uwsgi(name, port, module, env, single_process=False):
    """Start the WSGI app ``module`` as ``name`` on ``port``.

    ``single_process``: one process with threads (SQLite-backed apps: two
    processes writing one SQLite file at once see "database is locked").
    """
    check_port_free(name, port)
    processes, threads = ('1', '4') if single_process else ('2', '1')
    start(name, [
        os.path.join(settings.BIN, 'uwsgi'), '--http-socket',
        '%s:%d' % (settings.HOST, port),
        # uWSGI's http-socket does no keep-alive: tell clients so
        '--add-header', 'Connection: close',
        '--module', module, '--master', '--processes', processes,
        '--threads', threads, '--enable-threads', '--lazy-apps',
        '--die-on-term', '--need-app', '--buffer-size', '65535',
        # chunked request bodies (glanceclient's uploads: nova's snapshots)
        # come in parts of 1 MiB plus framing, over uWSGI's default limit
        # of 1 MiB for one part ("unable to receive chunked part")
        '--chunked-input-limit', str(CHUNKED_INPUT_LIMIT),
        '--thunder-lock', '--hook-master-start',
        'unix_signal:15 gracefully_kill_them_all',
        '--virtualenv', settings.VENV, '--procname-prefix', 'aio-%s ' % name],
        env=env)


def wait_http(name, port, path='/', timeout=120):
    """``name`` answers HTTP on ``port`` (any status below 500)."""
    import urllib.error
    import urllib.request

    def ok():
        ensure_alive(name)
        try:
            urllib.request.urlopen('http://%s:%d%s' % (settings.HOST, port,
                                                       path), timeout=5)
        except urllib.error.HTTPError as e:
            return e.code < 500
        return True
    try:
        wait_for(ok, timeout, '%s on port %d' % (name, port), log_path(name))
    except Failure as e:
        app = log_path(name + '-app')
        if e.log == log_path(name) and os.path.exists(app) and \
                'ERROR' in tail(app, 60):
            e.log = app
        raise


# -- restart on change --------------------------------------------------------

def config_digests():
    """sha256 of every file under ``$AIO_HOME/etc``, by path."""
    digests = {}
    for top, _dirs, files in os.walk(settings.ETC):
        for f in files:
            path = os.path.join(top, f)
            with open(path, 'rb') as fh:
                digests[path] = hashlib.sha256(fh.read()).hexdigest()
    return digests


def changed_since(before):
    """The files under ``$AIO_HOME/etc`` that differ from ``before``."""
    after = config_digests()
    return {p for p in after if before.get(p) != after[p]}


def stop_changed(config_files, changed):
    """Stop each running process whose configuration files (``{name:
    [paths]}``) are among ``changed``: the start that follows brings it
    up with the new ones."""
    for name, files in config_files.items():
        if running_pid(name) and changed & set(files):
            say('configuration of %s changed: restarting it' % name)
            stop(name)
