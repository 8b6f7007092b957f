"""The all-in-one's services, one module each, and their start order.

Every module has the same contract, which ``tools.aio.stack`` runs:

``PROCESSES``
    the process names it starts (PID files, logs, ``restart NAME``), in
    start order; ``PORTS`` the TCP port of those that listen.
``CONFIG_FILES``
    ``{process: [files]}``: a running process whose files changed is
    restarted.
``CATALOG``
    ``[(name, type, url)]``: a service user ``name`` and the catalog's
    service ``name`` of ``type`` at ``url``, registered once Keystone
    answers.
``NEEDS``
    services that must answer (their ``wait`` done) before its ``init``.
``configure()``
    write its configuration (every ``up``; idempotent).
``init()``
    one-time setup: databases, keys, users (idempotent).
``start()``
    start what does not run; returns without waiting where it can.
``wait()``
    until it serves.
``stop()``
    stop its processes.

Adding a service: a module with these, and one line in ``ORDER``.
"""

from tools.aio.services import compute2
from tools.aio.services import glance
from tools.aio.services import infra
from tools.aio.services import keystone
from tools.aio.services import libvirt_proxy
from tools.aio.services import neutron
from tools.aio.services import nova
from tools.aio.services import nova_compute
from tools.aio.services import placement
from tools.aio.services import serial_proxy

# start order; stop goes the other way
ORDER = [
    infra,
    keystone,
    glance,
    placement,
    neutron,
    nova,
    serial_proxy,
    libvirt_proxy,
    nova_compute,
    # the second compute host, with --computes 2
    compute2,
]


def processes():
    """Every process name, in start order."""
    return [name for svc in ORDER for name in svc.PROCESSES]
