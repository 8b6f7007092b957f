"""Keystone (identity) under uWSGI on :5000, MariaDB, fernet tokens.

Its ``wait`` also registers the catalog (``cloud.catalog``): every later
service's user and endpoints, which they and nova-compute need."""

from tools.aio import cloud
from tools.aio import conf
from tools.aio import process
from tools.aio.services import infra
from tools.aio import settings
from tools.aio import state

PORT = 5000
CONF = settings.etc('keystone', 'keystone.conf')
PROCESSES = ['keystone']
PORTS = {'keystone': PORT}
CONFIG_FILES = {'keystone': [CONF]}
CATALOG = []
NEEDS = (infra,)


def configure():
    moved = conf.uses_sqlite(CONF)
    conf.write_ini(CONF, {
        'DEFAULT': {'log_file': process.log_path('keystone-app')},
        # not SQLite: tempest's parallel workers made SQLite answer
        # "database is locked" (HTTP 500) to concurrent token requests
        'database': {'connection': conf.mysql_url('keystone')},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository':
                          settings.etc('keystone', 'fernet-keys')},
        'credential': {'key_repository':
                       settings.etc('keystone', 'credential-keys')},
        # a test cloud: bcrypt's default cost makes each token take ~1 s
        'identity': {'password_hash_rounds': '4'},
    })
    if moved:
        # an all-in-one made when Keystone ran on SQLite: its users and
        # catalog are made again in MariaDB, so every service that holds
        # tokens or ids of the old ones starts again
        process.say('keystone moves from SQLite to MariaDB: restarting '
                    'the services')
        from tools.aio import services
        for svc in reversed(services.ORDER):
            if svc is not infra:
                svc.stop()
        state.update(keystone_db=False)


def init():
    infra.create_databases('keystone')
    if state.done('keystone_db'):
        return
    manage = [settings.venv_tool('keystone-manage'), '--config-file', CONF]
    process.run(manage + ['db_sync'], 'keystone')
    for what in ('fernet_setup', 'credential_setup'):
        process.run(manage + [what, '--keystone-user', 'root',
                              '--keystone-group', 'root'], 'keystone')
    url = settings.KEYSTONE_URL
    process.run(manage + ['bootstrap', '--bootstrap-password',
                          state.password('admin'),
                          '--bootstrap-admin-url', url,
                          '--bootstrap-public-url', url,
                          '--bootstrap-internal-url', url,
                          '--bootstrap-region-id', settings.REGION],
                'keystone')
    state.mark_done('keystone_db')


def start():
    process.uwsgi('keystone', PORT, 'keystone.wsgi.api:application',
                  {'OS_KEYSTONE_CONFIG_FILES': CONF}, single_process=True)


def wait():
    process.wait_http('keystone', PORT, '/v3')
    from tools.aio import services
    cloud.catalog(entry for svc in services.ORDER for entry in svc.CATALOG)


def stop():
    process.stop_all(PROCESSES)
