"""The phases of tools/devstack-check (see __main__)."""

import os
import re
import shlex
import shutil
import subprocess
import time

from tools.devstack_check import localconf
from tools.devstack_check import machine
from tools.devstack_check import repos
from tools.devstack_check import settings

DEVSTACK = settings.STACK_HOME + '/devstack'
HOST_PACKAGES = ('mmdebstrap', 'iptables', 'git', 'python3-yaml',
                 'util-linux')
SERVERS = (
    # (server, image, flavor, the console line that says it ran)
    ('ds-disk', 'clear-busybox', 'clear.tiny', 'disk-init: up on'),
    ('ds-container', 'clear-busybox-container', 'clear.tiny',
     'container says:'),
)
TOTALS = re.compile(r'^ - (Passed|Failed|Skipped): (\d+)', re.M)
# tempest's tests that make their own project networks: VLANs with ML2
# macvtap (local.conf.sample), which a kernel without 802.1Q cannot make
# (this host's has no 8021q module); excluded only where that is so
PROJECT_NETWORK_TESTS = (r'^tempest\.api\.compute\.servers\.'
                         r'test_create_server_multi_nic\.')
VLAN_PROBE = ('ip link add ncds-probe type veth peer name ncds-probep && '
              'ip link add link ncds-probe name ncds-probe.2 type vlan id 2; '
              'rc=$?; ip link del ncds-probe 2>/dev/null; exit $rc')


class Failure(Exception):
    pass


def say(msg):
    print('[devstack-check %s] %s' % (time.strftime('%H:%M:%S'), msg),
          flush=True)


def host_packages():
    missing = [p for p in HOST_PACKAGES if subprocess.run(
        ['dpkg-query', '-W', '-f=${Status}', p], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True).stdout.split()[-1:] !=
        ['installed']]
    if missing:
        say('installing on this host: %s' % ' '.join(missing))
        subprocess.run(['apt-get', 'install', '-y', '-q'] + missing,
                       check=True, env=dict(os.environ,
                                            DEBIAN_FRONTEND='noninteractive'))


def read(path):
    with open(path) as f:
        return f.read()


def local_conf_text():
    return localconf.build(read(settings.SAMPLE_LOCAL_CONF),
                           read(settings.ZUUL_YAML), settings.ZUUL_JOB,
                           settings.GIT_BASE, settings.STACK_HOME)


def prepare():
    host_packages()
    machine.down()
    if machine.ensure_rootfs_tar():
        say('made %s' % settings.ROOTFS_TAR)
    machine.fresh_root()
    say('fresh Debian 12 root in %s' % settings.ROOT)
    if os.path.exists(settings.LOGS):
        shutil.rmtree(settings.LOGS)
    for bare in repos.make_all():
        say('git repository %s' % bare[len(settings.ROOT):])
    repos.unpack_devstack()
    script = os.path.join(settings.ROOT, 'tmp', 'prepare-machine.sh')
    shutil.copy(os.path.join(os.path.dirname(__file__),
                             'prepare-machine.sh'), script)
    machine.up()
    say('machine up: netns %s, %s' % (settings.NETNS, settings.MACHINE_ADDR))
    machine.run('bash /tmp/prepare-machine.sh %s'
                % shlex.quote(settings.SYSTEMCTL_PACKAGE), log='prepare.log')
    conf = os.path.join(settings.ROOT, DEVSTACK.lstrip('/'), 'local.conf')
    with open(conf, 'w') as f:
        f.write(local_conf_text())
    machine.run('chown stack:stack %s/local.conf' % DEVSTACK)
    for key, (sample, zuul) in localconf.localrc_differences(
            read(settings.SAMPLE_LOCAL_CONF), read(settings.ZUUL_YAML),
            settings.ZUUL_JOB).items():
        say('note: %s is %s in local.conf.sample, %s in the Zuul job'
            % (key, sample, zuul))
    say('local.conf written (forced settings: %s)' % ', '.join(
        s.split('=')[0] for s, _ in localconf.FORCED))


def up():
    machine.up()


def shell():
    os.execvp('nsenter', machine.enter_command('exec bash -l'))


def stack():
    say('stack.sh (its log: %s/logs/stack.sh.log in the machine, '
        'output in %s/stack.log)' % (settings.STACK_HOME, settings.LOGS))
    rc = machine.run('./stack.sh', user='stack', cwd=DEVSTACK,
                     log='stack.log', check=False)
    tail = subprocess.run(['tail', '-n', '25', os.path.join(
        settings.LOGS, 'stack.log')], stdout=subprocess.PIPE,
        text=True).stdout
    print(tail)
    if rc:
        raise Failure('stack.sh exited %d' % rc)


def openstack(args, cloud='devstack'):
    try:
        return machine.output('openstack --os-cloud %s %s' % (cloud, args),
                              user='stack')
    except subprocess.CalledProcessError as e:
        what = args.split(' -')[0]
        raise Failure('openstack %s exited %d' % (what, e.returncode))


def servers():
    for name, image, flavor, line in SERVERS:
        openstack('server delete --wait %s 2>/dev/null || true' % name)
        t0 = time.monotonic()
        openstack('server create --image %s --flavor %s --network clear-net '
                  '--wait -f value -c id %s' % (image, flavor, name))
        active = time.monotonic() - t0
        console = ''
        deadline = time.monotonic() + 300
        while line not in console and time.monotonic() < deadline:
            console = openstack('console log show %s' % name)
            if line not in console:
                time.sleep(1)
        seen = time.monotonic() - t0
        print('----- console of %s (image %s) -----' % (name, image))
        print(console.rstrip())
        print('----- end of console -----')
        if line not in console:
            raise Failure('%s: no %r on its console in 300 s' % (name, line))
        say('%s: ACTIVE %.1f s after create, its line %.1f s after create'
            % (name, active, seen))
        openstack('server delete --wait %s' % name)


def tempest():
    regex, concurrency = localconf.tempest_selection(
        read(settings.ZUUL_YAML), settings.ZUUL_JOB)
    say('tempest --regex %s --concurrency %d' % (regex, concurrency))
    cmd = ('%s/tempest/.tox/tempest/bin/tempest run --regex %s '
           '--concurrency %d' % (settings.STACK_HOME, shlex.quote(regex),
                                 concurrency))
    if machine.run(VLAN_PROBE, log='tempest.log', check=False):
        say('not run: %s (this kernel makes no 802.1Q VLAN devices, so the '
            'project networks they make, VLANs with ML2 macvtap, cannot be '
            'plugged; a Zuul node\'s kernel can)' % PROJECT_NETWORK_TESTS)
        cmd += ' --exclude-regex %s' % shlex.quote(PROJECT_NETWORK_TESTS)
    rc = machine.run(cmd, user='stack', cwd=settings.STACK_HOME + '/tempest',
                     log='tempest.log', check=False)
    text = read(os.path.join(settings.LOGS, 'tempest.log'))
    counts = {k.lower(): int(v) for k, v in TOTALS.findall(text)}
    print('tempest: %d passed, %d failed, %d skipped' % (
        counts.get('passed', 0), counts.get('failed', 0),
        counts.get('skipped', 0)))
    if rc or counts.get('failed', 0) or not counts.get('passed'):
        raise Failure('tempest exited %d; see %s/tempest.log'
                      % (rc, settings.LOGS))


def unstack():
    machine.run('./unstack.sh', user='stack', cwd=DEVSTACK,
                log='unstack.log')
    machine.run('./clean.sh', user='stack', cwd=DEVSTACK, log='clean.log')


def down():
    machine.down()
