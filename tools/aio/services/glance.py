"""Glance (images) under uWSGI on :9292, MariaDB, the file store."""

import os

from tools.aio import conf
from tools.aio import process
from tools.aio.services import infra
from tools.aio import settings
from tools.aio import state

PORT = 9292
DIR = settings.etc('glance')
CONF = os.path.join(DIR, 'glance-api.conf')
PROCESSES = ['glance']
PORTS = {'glance': PORT}
CONFIG_FILES = {'glance': [CONF, os.path.join(DIR, 'glance-api-paste.ini')]}
CATALOG = [('glance', 'image', 'http://%s:%d' % (settings.HOST, PORT))]
NEEDS = (infra,)


def configure():
    if conf.uses_sqlite(CONF):
        # made when Glance ran on SQLite: its images are uploaded again
        state.update(glance_db=False)
    conf.write_ini(CONF, {
        'DEFAULT': {'log_file': process.log_path('glance-app'),
                    'enabled_backends': 'fs:file',
                    'bind_host': settings.HOST},
        'database': {'connection': conf.mysql_url('glance')},
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir':
               os.path.join(settings.DATA, 'images')},
        'os_glance_staging_store': {'filesystem_store_datadir':
                                    os.path.join(settings.DATA,
                                                 'glance-staging')},
        'os_glance_tasks_store': {'filesystem_store_datadir':
                                  os.path.join(settings.DATA,
                                               'glance-tasks')},
        'keystone_authtoken': conf.authtoken('glance'),
        'paste_deploy': {'flavor': 'keystone'},
        'oslo_concurrency': {'lock_path': settings.LOCKS},
    })
    conf.copy_from_venv('etc/glance/glance-api-paste.ini', DIR)


def init():
    os.makedirs(os.path.join(settings.DATA, 'images'), exist_ok=True)
    infra.create_databases('glance')
    if not state.done('glance_db'):
        process.run([settings.venv_tool('glance-manage'), '--config-file',
                     CONF, 'db_sync'], 'glance')
        state.mark_done('glance_db')


def start():
    process.uwsgi('glance', PORT, 'glance.wsgi.api:application',
                  {'OS_GLANCE_CONFIG_DIR': DIR}, single_process=True)


def wait():
    process.wait_http('glance', PORT)


def stop():
    process.stop_all(PROCESSES)
