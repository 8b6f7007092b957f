"""Nova's control plane: the API under uWSGI on :8774, conductor and
scheduler (one worker each), MariaDB (the API database, cell0, cell1) and
cells v2.  nova-compute is ``nova_compute``; both build on ``common()``."""

import os
import socket

from tools.aio import conf
from tools.aio import process
from tools.aio.services import infra
from tools.aio.services import keystone
from tools.aio import settings
from tools.aio import state

PORT = 8774
DIR = settings.etc('nova')
API_CONF = os.path.join(DIR, 'nova.conf')
SERVICES_CONF = os.path.join(DIR, 'nova-services.conf')
STATE_PATH = os.path.join(settings.DATA, 'nova')
INSTANCES = os.path.join(STATE_PATH, 'instances')
PROCESSES = ['nova-api', 'nova-conductor', 'nova-scheduler']
PORTS = {'nova-api': PORT}
CONFIG_FILES = {'nova-api': [API_CONF, os.path.join(DIR, 'api-paste.ini')],
                'nova-conductor': [SERVICES_CONF],
                'nova-scheduler': [SERVICES_CONF]}
CATALOG = [('nova', 'compute', 'http://%s:%d/v2.1' % (settings.HOST, PORT))]
# conductor and scheduler talk through RabbitMQ, and the conductor logs in
# (placement) as it starts: its service user must exist
NEEDS = (infra, keystone)
# (nova 34's defaults: availability zones are a placement pre-filter)
SCHEDULER_FILTERS = ('ComputeFilter',
                     'ComputeCapabilitiesFilter', 'ImagePropertiesFilter',
                     'ServerGroupAntiAffinityFilter',
                     'ServerGroupAffinityFilter', 'SameHostFilter',
                     'DifferentHostFilter')
MANAGE = [settings.venv_tool('nova-manage'), '--config-file', SERVICES_CONF]


def common():
    """The settings of every nova service (a fresh copy)."""
    return {
        'DEFAULT': {'transport_url': conf.rabbit_url(),
                    'state_path': STATE_PATH,
                    'instances_path': INSTANCES,
                    'my_ip': settings.HOST, 'host': socket.gethostname(),
                    # one host: resize and cold migration stay on it (the
                    # API and the scheduler read this); shelve offloads at
                    # once (the compute manager), so unshelve boots from
                    # the snapshot
                    'allow_resize_to_same_host': 'true',
                    'shelved_offload_time': '0'},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': conf.authtoken('nova'),
        'service_user': dict(conf.ks_auth('nova'),
                             send_service_user_token='true'),
        'placement': conf.ks_auth('placement'),
        'neutron': conf.ks_auth('neutron'),
        'glance': {'api_servers': 'http://%s:9292' % settings.HOST},
        'oslo_concurrency': {'lock_path': settings.LOCKS},
        # one host: a failed build has nowhere else to go, and the
        # server's fault then names the real error
        'scheduler': {'workers': '1', 'max_attempts': '1'},
        # nova's default filters plus "same_host"/"different_host"
        # scheduler hints (tempest's tests that need two hosts use them)
        'filter_scheduler': {'enabled_filters': ','.join(
            SCHEDULER_FILTERS)},
        'conductor': {'workers': '1'},
        'notifications': {'notification_format': 'unversioned'},
        'oslo_messaging_notifications': {'driver': 'noop'},
    }


def configure():
    api = common()
    api['DEFAULT']['log_file'] = process.log_path('nova-api-app')
    api['api_database'] = {'connection': conf.mysql_url('nova_api')}
    api['database'] = {'connection': conf.mysql_url('nova_cell0')}
    conf.write_ini(API_CONF, api)
    conf.copy_from_venv('etc/nova/api-paste.ini', DIR)
    # conductor/scheduler: the API database and cell1
    services = common()
    services['api_database'] = api['api_database']
    services['database'] = {'connection': conf.mysql_url('nova')}
    conf.write_ini(SERVICES_CONF, services)


def init():
    infra.create_databases('nova_api', 'nova', 'nova_cell0')
    if state.done('nova_db'):
        return
    process.say('Nova databases and cells v2')
    process.run(MANAGE + ['api_db', 'sync'], 'nova-manage')
    process.run(MANAGE + ['cell_v2', 'map_cell0', '--database_connection',
                          conf.mysql_url('nova_cell0')], 'nova-manage')
    # exit code 2: the cell exists already
    rc = process.run(MANAGE + ['cell_v2', 'create_cell', '--name', 'cell1',
                               '--verbose'], 'nova-manage', check=False)
    if rc not in (0, 2):
        raise process.Failure('nova-manage cell_v2 create_cell exited %d'
                              % rc, process.log_path('nova-manage'))
    process.run(MANAGE + ['db', 'sync'], 'nova-manage')
    state.mark_done('nova_db')


def start():
    # nova reads <dir>/api-paste.ini and <dir>/nova.conf
    process.uwsgi('nova-api', PORT, 'nova.wsgi.osapi_compute:application',
                  {'OS_NOVA_CONFIG_DIR': DIR})
    for name in ('nova-conductor', 'nova-scheduler'):
        process.start(name, [settings.venv_tool(name), '--config-file',
                             SERVICES_CONF])


def wait():
    process.wait_http('nova-api', PORT)
    for name in ('nova-conductor', 'nova-scheduler'):
        process.ensure_alive(name)


def stop():
    process.stop_all(PROCESSES)


def discover_hosts():
    """Map new compute hosts into cell1."""
    process.run(MANAGE + ['cell_v2', 'discover_hosts', '--verbose'],
                'nova-manage')
