"""Bring the all-in-one up and down: orchestration only, as devstack's
stack.sh.  What each service does is in its module (``services``)."""

import os
import socket
import time

from tools.aio import cloud
from tools.aio import hostnet
from tools.aio import process
from tools.aio import services
from tools.aio.services import compute2
from tools.aio.services import nova
from tools.aio.services import nova_compute
from tools.aio import settings
from tools.aio import state


def up():
    """Every service configured, running and serving; the cloud's objects
    made.  Only what changed (configuration, code) is restarted."""
    t0 = time.monotonic()
    for d in (settings.ETC, settings.DATA, settings.LOGS, settings.RUN,
              settings.LOCKS):
        os.makedirs(d, exist_ok=True)
    if os.environ.get('AIO_VENV_RECREATED'):
        # they run from the venv that was just replaced
        for name in reversed(services.processes()):
            if process.stop(name):
                process.say('the venv was made again: stopped %s' % name)
    before = process.config_digests()
    cloud.write_client_config()
    for svc in services.ORDER:
        svc.configure()
    changed = process.changed_since(before)
    for svc in services.ORDER:
        process.stop_changed(svc.CONFIG_FILES, changed)
    hostnet.up()
    waited = set()

    def wait(svc):
        if svc not in waited:
            svc.wait()
            waited.add(svc)
    for svc in services.ORDER:
        for need in svc.NEEDS:
            wait(need)
        process.say(_title(svc))
        svc.init()
        svc.start()
    for svc in services.ORDER:
        wait(svc)
    cloud.provider_network()
    cloud.images_and_flavors()
    _record()
    process.say('services up in %.1fs' % (time.monotonic() - t0))


def stop():
    for svc in reversed(services.ORDER):
        svc.stop()
    hostnet.down()
    st = state.load()
    if st:
        st['ready'] = False
        state.save(st)


def _title(svc):
    return '%s: %s' % (svc.__name__.rsplit('.', 1)[1],
                       ', '.join(svc.PROCESSES))


def _record():
    """What the integration tests read (tests/integration/base.py)."""
    state.update(
        ready=True, home=settings.AIO_HOME, venv=settings.VENV,
        instances_path=nova.INSTANCES, clouds=settings.CLOUDS_YAML,
        cloud=settings.CLOUD, compute_host=socket.gethostname(),
        logs=settings.LOGS, compute_user=nova_compute.USER,
        compute_state=nova_compute.STATE_PATH,
        compute_locks=nova_compute.LOCKS, sudoers=nova_compute.SUDOERS,
        compute_conf=nova_compute.CONF, workload_line=cloud.WORKLOAD_LINE,
        exit_command=cloud.EXIT_COMMAND)
    compute2.record()
