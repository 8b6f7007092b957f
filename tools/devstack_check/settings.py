"""Where the devstack check keeps its machine, and what it is made of."""

import os

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONSTRAINTS = os.path.join(PROJECT, 'constraints.txt')
SAMPLE_LOCAL_CONF = os.path.join(PROJECT, 'devstack', 'local.conf.sample')
ZUUL_YAML = os.path.join(PROJECT, '.zuul.yaml')
ZUUL_JOB = 'nova-clear-devstack-tempest'

STATE = os.environ.get('DEVSTACK_CHECK_HOME', '/var/lib/nova-clear-devstack')
CACHE = os.environ.get('DEVSTACK_CHECK_CACHE',
                       '/var/cache/nova-clear-devstack')
ROOT = os.path.join(STATE, 'root')
RUN = os.path.join(STATE, 'run')
LOGS = os.path.join(STATE, 'logs')
ROOTFS_TAR = os.path.join(CACHE, 'rootfs-bookworm.tar')
SDISTS = os.path.join(CACHE, 'sdists')

DEVSTACK_TARBALL = os.environ.get(
    'DEVSTACK_TARBALL', os.path.join(
        os.path.dirname(PROJECT), 'shared', 'third-party',
        'devstack-493835a6.tar.gz'))

# The machine: Debian 12 from Debian's mirror, the packages devstack
# expects to find on a cloud image before it starts (git, sudo, python3).
SUITE = 'bookworm'
MIRROR = 'http://deb.debian.org/debian'
ROOTFS_PACKAGES = ('sudo', 'git', 'ca-certificates', 'iproute2',
                   'lsb-release', 'python3', 'python3-pip', 'python3-venv',
                   'procps', 'curl', 'gnupg', 'locales', 'net-tools',
                   'iputils-ping', 'kmod')
HOSTNAME = 'devstack'

# Its network: a namespace with one veth to this host, NATed out.
NETNS = 'nova-clear-ds'
HOST_VETH = 'ncds0'
HOST_ADDR = '10.79.0.1'
MACHINE_ADDR = '10.79.0.2'
PREFIX = 30

# The systemctl/journalctl stand-in devstack's unit files run under.
SYSTEMCTL_PACKAGE = 'docker-systemctl-replacement==1.7.1097'

# Git repositories devstack clones, made from the releases' sdists on
# PyPI (repository name, PyPI name); versions come from constraints.txt,
# tempest's from the all-in-one's pin.
SERVICE_REPOS = (('keystone', 'keystone'), ('glance', 'glance'),
                 ('nova', 'nova'), ('placement', 'openstack-placement'),
                 ('neutron', 'neutron'), ('tempest', 'tempest'))
REQUIREMENTS_SDIST = ('openstack-requirements', '1.2.0')
GIT_BASE = '/opt/git'
STACK_HOME = '/opt/stack'
