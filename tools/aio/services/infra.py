"""Infrastructure: MariaDB (the SQL databases) and RabbitMQ (with its own
epmd), the Debian packages' daemons run in the foreground by us."""

import os
import shutil

from tools.aio import process
from tools.aio import settings
from tools.aio import state

MYSQL_SOCK = '/run/mysqld/mysqld.sock'
RABBIT_PORT = 5672
PROCESSES = ['mariadb', 'epmd', 'rabbitmq']
PORTS = {'mariadb': 3306, 'rabbitmq': RABBIT_PORT}
CONFIG_FILES = {}
CATALOG = []
NEEDS = ()


def configure():
    pass


def init():
    if not os.path.isdir('/var/lib/mysql/mysql'):
        process.run(['mariadb-install-db', '--user=mysql',
                     '--datadir=/var/lib/mysql'], 'mariadb')


def start():
    """RabbitMQ first (slow to boot: it overlaps with what follows), then
    MariaDB, waited for: the services' ``init`` make their databases."""
    process.start('epmd', ['epmd', '-address', settings.HOST],
                  user='rabbitmq')
    process.check_port_free('rabbitmq', RABBIT_PORT)
    process.start('rabbitmq', ['/usr/lib/rabbitmq/bin/rabbitmq-server'],
                  user='rabbitmq', cwd='/var/lib/rabbitmq', env={
                      'HOME': '/var/lib/rabbitmq',
                      'RABBITMQ_NODENAME': 'rabbit@localhost',
                      'RABBITMQ_NODE_IP_ADDRESS': settings.HOST,
                      'RABBITMQ_LOGS': '-',
                      'ERL_EPMD_ADDRESS': settings.HOST})
    if not process.running_pid('mariadb'):
        process.check_port_free('mariadb', PORTS['mariadb'])
        os.makedirs('/run/mysqld', exist_ok=True)
        shutil.chown('/run/mysqld', 'mysql', 'mysql')
        process.start('mariadb', [
            'mariadbd', '--user=mysql', '--bind-address=%s' % settings.HOST,
            '--port=%d' % PORTS['mariadb'], '--socket=%s' % MYSQL_SOCK,
            '--skip-log-error', '--max-connections=500',
            '--innodb-flush-log-at-trx-commit=2',
            '--innodb-buffer-pool-size=128M'])
    process.wait_for(lambda: process.ensure_alive('mariadb') or sql_ping(),
                     60, 'MariaDB', process.log_path('mariadb'))
    pw = state.password('db')
    sql([stmt % (host, pw) for host in ('localhost', '127.0.0.1')
         for stmt in ("CREATE USER IF NOT EXISTS 'aio'@'%s' "
                      "IDENTIFIED BY '%s'",
                      "ALTER USER 'aio'@'%s' IDENTIFIED BY '%s'")])


def wait():
    process.wait_for(lambda: process.ensure_alive('rabbitmq') or
                     process.port_open(RABBIT_PORT), 120,
                     'RabbitMQ on port %d' % RABBIT_PORT,
                     process.log_path('rabbitmq'))


def stop():
    process.stop_all(PROCESSES)


def sql_ping():
    return process.run(['mariadb-admin', '--socket=%s' % MYSQL_SOCK,
                        'ping'], 'mariadb', check=False) == 0


def sql(statements):
    process.run(['mariadb', '--socket=%s' % MYSQL_SOCK], 'mariadb',
                input=';\n'.join(statements) + ';\n')


def create_databases(*names):
    """Databases of a service, all privileges to the all-in-one's user
    (idempotent)."""
    statements = []
    for db in names:
        statements.append('CREATE DATABASE IF NOT EXISTS %s '
                          'CHARACTER SET utf8' % db)
        for host in ('localhost', '127.0.0.1'):
            statements.append("GRANT ALL PRIVILEGES ON %s.* TO 'aio'@'%s'"
                              % (db, host))
    sql(statements)
