"""The all-in-one (``tools/allinone``) seen from a client.

Where it keeps its state (``$AIO_HOME/aio.json``, written by
tools/aio), whether it is up, and an admin openstacksdk connection
to its APIs on 127.0.0.1.  Used by ``tools/bench_network.py`` and the
integration tests; openstacksdk is imported only when a connection is
asked for (it is in the all-in-one's venv, not a requirement of
nova-clear).
"""

import json
import os
import threading

AIO_HOME = os.environ.get('AIO_HOME', '/opt/nova-clear-aio')
STATE = os.path.join(AIO_HOME, 'aio.json')
_lock = threading.Lock()
_connection = []


def not_up_reason():
    """Why the all-in-one cannot be used now, or None when it is up."""
    try:
        with open(STATE) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return ('the all-in-one is not set up (no %s): run tools/allinone '
                'up' % STATE)
    if not state.get('ready'):
        return 'the all-in-one is stopped: run tools/allinone up'
    pidfile = os.path.join(AIO_HOME, 'run', 'nova-compute.pid')
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return 'nova-compute of the all-in-one is not running: ' \
               'run tools/allinone up'
    return None


def state():
    """The all-in-one's state: passwords, image ids, the network, paths."""
    with open(STATE) as f:
        return json.load(f)


def connection():
    """One admin connection per process (compute API 2.90)."""
    with _lock:
        if not _connection:
            import openstack
            pw = state()['passwords']
            _connection.append(openstack.connect(
                auth_url='http://127.0.0.1:5000/v3', username='admin',
                password=pw['admin'], project_name='admin',
                user_domain_name='Default', project_domain_name='Default',
                region_name='RegionOne', compute_api_version='2.90',
                identity_api_version='3'))
        return _connection[0]
