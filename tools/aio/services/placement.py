"""Placement under uWSGI on :8778, MariaDB (concurrent allocation writes
would lock a SQLite file)."""

from tools.aio import conf
from tools.aio import process
from tools.aio.services import infra
from tools.aio import settings
from tools.aio import state

PORT = 8778
DIR = settings.etc('placement')
CONF = settings.etc('placement', 'placement.conf')
PROCESSES = ['placement']
PORTS = {'placement': PORT}
CONFIG_FILES = {'placement': [CONF]}
CATALOG = [('placement', 'placement',
            'http://%s:%d' % (settings.HOST, PORT))]
NEEDS = ()


def configure():
    conf.write_ini(CONF, {
        'DEFAULT': {'log_file': process.log_path('placement-app')},
        'placement_database': {'connection': conf.mysql_url('placement')},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': conf.authtoken('placement'),
    })


def init():
    infra.create_databases('placement')
    if not state.done('placement_db_mysql'):
        process.run([settings.venv_tool('placement-manage'), '--config-file',
                     CONF, 'db', 'sync'], 'placement')
        state.mark_done('placement_db_mysql')


def start():
    process.uwsgi('placement', PORT, 'placement.wsgi.api:application',
                  {'OS_PLACEMENT_CONFIG_DIR': DIR})


def wait():
    process.wait_http('placement', PORT)


def stop():
    process.stop_all(PROCESSES)
