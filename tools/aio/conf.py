"""Configuration-file helpers the services share: the INI writer, the
Keystone sections of a service user, and the database and message-queue
URLs."""

import configparser
import os
import shutil

from tools.aio import settings
from tools.aio import state


def write_ini(path, sections):
    """Write ``{section: {key: value}}`` to ``path`` (mode 0640)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for section, values in sections.items():
        lines.append('[%s]' % section)
        for k, v in values.items():
            lines.append('%s = %s' % (k, v))
        lines.append('')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640),
              'w') as f:
        f.write('\n'.join(lines))


def copy_from_venv(relpath, dest_dir):
    """A file the venv's package ships (e.g. ``etc/nova/api-paste.ini``)."""
    os.makedirs(dest_dir, exist_ok=True)
    shutil.copy(os.path.join(settings.VENV, relpath), dest_dir)


def ks_auth(user):
    """keystoneauth options of the service user ``user``."""
    return {'auth_type': 'password',
            'auth_url': settings.KEYSTONE_URL,
            'username': user, 'password': state.password(user),
            'user_domain_name': 'Default', 'project_name': 'service',
            'project_domain_name': 'Default',
            'region_name': settings.REGION}


def authtoken(user):
    """The ``[keystone_authtoken]`` section of a service's API."""
    d = ks_auth(user)
    d['www_authenticate_uri'] = d['auth_url']
    d.pop('region_name')
    return d


def mysql_url(db):
    return 'mysql+pymysql://aio:%s@%s/%s?charset=utf8' % (
        state.password('db'), settings.HOST, db)


def uses_sqlite(path):
    """Whether the configuration file at ``path`` (if any) has a SQLite
    ``[database] connection`` (what the all-in-one used before MariaDB)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    return cp.get('database', 'connection',
                  fallback='').startswith('sqlite:')


def rabbit_url():
    return 'rabbit://guest:guest@%s:5672/' % settings.HOST
