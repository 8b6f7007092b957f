"""nova-serialproxy on :6083: the websocket of ``openstack console url show
--serial``, relayed to the TCP port QEMU listens on for the instance's
serial console (``[serial_console]`` in nova-compute's configuration,
``compute_settings``).  It reads the console token and the instance from
cell1's database and asks nova-compute over RabbitMQ to validate the port,
so it runs with the conductor's configuration plus its own listen address,
as devstack runs n-sproxy with the cell's configuration."""

import os

from tools.aio import conf
from tools.aio import process
from tools.aio.services import infra
from tools.aio.services import nova
from tools.aio import settings

PORT = 6083
CONF = os.path.join(nova.DIR, 'nova-serialproxy.conf')
PROCESSES = ['nova-serialproxy']
PORTS = {'nova-serialproxy': PORT}
CONFIG_FILES = {'nova-serialproxy': [nova.SERVICES_CONF, CONF]}
CATALOG = []
NEEDS = (infra,)
# QEMU (as libvirt-qemu) listens on these for nova-serialproxy
PORT_RANGE = '10000:20000'


def compute_settings():
    """nova-compute's ``[serial_console]``: where its guests' consoles
    listen and the URL it hands out."""
    return {'enabled': 'true',
            'base_url': 'ws://%s:%d/' % (settings.HOST, PORT),
            'proxyclient_address': settings.HOST,
            'port_range': PORT_RANGE}


def configure():
    conf.write_ini(CONF, {'serial_console': {
        'serialproxy_host': settings.HOST,
        'serialproxy_port': str(PORT)}})


def init():
    pass


def start():
    process.check_port_free('nova-serialproxy', PORT)
    process.start('nova-serialproxy', [
        settings.venv_tool('nova-serialproxy'),
        '--config-file', nova.SERVICES_CONF, '--config-file', CONF])


def wait():
    def listening():
        process.ensure_alive('nova-serialproxy')
        return process.port_open(PORT)
    process.wait_for(listening, 60, 'nova-serialproxy on port %d' % PORT,
                     process.log_path('nova-serialproxy'))


def stop():
    # a child of websockify's ignores SIGTERM: the group is killed after a
    # few seconds rather than process.stop's default 20
    if process.stop('nova-serialproxy', timeout=5):
        process.say('stopped nova-serialproxy')
