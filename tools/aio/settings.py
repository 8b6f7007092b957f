"""Where the all-in-one lives and the names every module shares.

Paths come from the environment ``tools/allinone`` sets (``AIO_HOME``,
``AIO_VENV``); service-specific settings live in the service's module.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
AIO_HOME = os.environ.get('AIO_HOME', '/opt/nova-clear-aio')
VENV = os.environ.get('AIO_VENV', os.path.join(AIO_HOME, 'venv'))
BIN = os.path.join(VENV, 'bin')
ETC = os.path.join(AIO_HOME, 'etc')
DATA = os.path.join(AIO_HOME, 'data')
LOGS = os.path.join(AIO_HOME, 'logs')
RUN = os.path.join(AIO_HOME, 'run')
STATE = os.path.join(AIO_HOME, 'aio.json')
LOCKS = os.path.join(DATA, 'locks')
CLOUDS_YAML = os.path.join(AIO_HOME, 'clouds.yaml')
ADMIN_OPENRC = os.path.join(AIO_HOME, 'admin-openrc')
CLOUD = 'nova-clear-aio'
# every service listens here
HOST = '127.0.0.1'
REGION = 'RegionOne'
KEYSTONE_URL = 'http://%s:5000/v3' % HOST
COMPUTE_MICROVERSION = '2.90'


def etc(*parts):
    """A path under ``$AIO_HOME/etc``."""
    return os.path.join(ETC, *parts)


def venv_tool(name):
    return os.path.join(BIN, name)


# compute hosts: "up|start --computes N" sets it for the run; the other
# subcommands use what the last up/start recorded (aio.json "computes")
COMPUTES = None


def computes():
    if COMPUTES is not None:
        return COMPUTES
    import json
    try:
        with open(STATE) as f:
            return int(json.load(f).get('computes') or 1)
    except (OSError, ValueError):
        return 1
