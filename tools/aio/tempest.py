"""tempest, the judge, against the running all-in-one.

``tools/allinone tempest [--smoke | REGEX] [--concurrency N]``: installs
tempest (TEMPEST_VERSION) in its own venv, makes a workspace, writes
``tempest.conf`` from the running cloud and from what the driver declares
(``nova_clear.deploy.tempest_conf``, the same derivation the devstack
plugin uses), runs it and prints ``N passed, N failed, N skipped`` with
the failures and the skip reasons; ``results.json`` in the workspace keeps
them.  Without a regex: ``tempest.api.compute`` without the ``slow`` tag.
"""

import configparser
import json
import os
import re
import subprocess

from tools.aio import cloud
from tools.aio import hostnet
from tools.aio import process
from tools.aio.services import nova
from tools.aio import settings
from tools.aio import state

TEMPEST_VERSION = '47.0.0'
VENV = os.path.join(settings.AIO_HOME, 'tempest-venv')
WORKSPACE = os.path.join(settings.AIO_HOME, 'tempest')
CONF = os.path.join(WORKSPACE, 'etc', 'tempest.conf')
RESULTS = os.path.join(WORKSPACE, 'results.json')
FULL = r'^tempest\.api\.compute\.'
EXCLUDE_SLOW = r'\[.*\bslow\b.*\]'
# what .ci/run runs (tools/run-tests): the day-two operations through Nova
# (server actions: reboot, rebuild, resize, stop/start, pause, suspend,
# shelve, lock, console log, backups; rescue; disk config; snapshots)
SMOKE = (r'^tempest\.api\.compute\.(servers\.test_server_actions\.'
         r'ServerActionsTest(JSON|OtherA|OtherB)\b|servers\.'
         r'test_server_rescue\.|servers\.test_disk_config\.|images\.'
         r'test_images_oneserver\.)')
# SSH validation: tempest logs in to its servers as root with their key
# pair, on their fixed address on the provider network (no floating IPs:
# ML2 macvtap has no routers), from this host through its macvlan on the
# network (nova_clear.deploy.provider_net.ensure_host_access); the images
# are nova_clear.sample_ssh's
VALIDATION = {'run_validation': 'true', 'connect_method': 'fixed',
              'auth_method': 'keypair', 'ip_version_for_ssh': '4',
              'image_ssh_user': 'root', 'image_alt_ssh_user': 'root'}
# tempest's flavors (flavor_ref, flavor_ref_alt: what resize goes to) per
# machine variant
FLAVORS = {'microvm': ('clear.tiny', 'clear.small'),
           'q35': ('clear.tiny.pci', 'clear.small.pci')}
# tests that make their own project networks: with ML2 macvtap these are
# VLAN networks, which only a host whose kernel makes 802.1Q devices can
# plug (tools/aio/services/neutron.py vlan_capable); elsewhere excluded,
# with this reason printed
PROJECT_NETWORK_TESTS = (r'^tempest\.api\.compute\.servers\.'
                         r'test_create_server_multi_nic\.')
NO_VLAN_REASON = ('this host\'s kernel makes no 802.1Q VLAN devices, so '
                  'project networks (VLANs with ML2 macvtap) cannot be '
                  'plugged')
PYTHON = os.environ.get('PYTHON', '/usr/bin/python3')


def tool(name):
    return os.path.join(VENV, 'bin', name)


def ensure_installed():
    """tempest TEMPEST_VERSION in VENV and a workspace in WORKSPACE."""
    try:
        out = subprocess.run([tool('tempest'), '--version'],
                             capture_output=True, text=True).stdout
    except OSError:
        out = ''
    if TEMPEST_VERSION not in out:
        process.say('installing tempest %s in %s' % (TEMPEST_VERSION, VENV))
        process.run([PYTHON, '-m', 'venv', '--clear', VENV],
                    'tempest-install')
        process.run([tool('pip'), 'install', '-q',
                     'tempest==%s' % TEMPEST_VERSION], 'tempest-install')
    if not os.path.exists(os.path.join(WORKSPACE, '.stestr.conf')):
        process.run([tool('tempest'), 'init', WORKSPACE], 'tempest-install')


def write_conf(driver_flags, machine_type='microvm'):
    """tempest.conf for the running all-in-one; ``driver_flags`` are the
    ``[compute-feature-enabled]`` flags, ``machine_type`` the variant of
    tempest's flavors."""
    conn = cloud.connection()
    ids = cloud.images_and_flavors()
    name, name_alt = FLAVORS[machine_type]
    flavor = conn.compute.find_flavor(name, ignore_missing=False)
    flavor_alt = conn.compute.find_flavor(name_alt, ignore_missing=False)
    c = configparser.ConfigParser(interpolation=None)
    c.optionxform = str
    c.read_dict({
        'DEFAULT': {'log_dir': os.path.join(WORKSPACE, 'logs'),
                    'log_file': 'tempest.log'},
        'oslo_concurrency': {'lock_path': os.path.join(WORKSPACE, 'lock')},
        'auth': {'admin_username': 'admin',
                 'admin_password': state.password('admin'),
                 'admin_project_name': 'admin',
                 'admin_domain_name': 'Default',
                 'use_dynamic_credentials': 'true',
                 # every server gets a port on the shared provider network:
                 # ML2 macvtap has no routers, tenant networks need VLANs
                 'create_isolated_networks': 'false'},
        'identity': {'uri_v3': settings.KEYSTONE_URL, 'auth_version': 'v3',
                     'region': settings.REGION},
        'compute': {
            # a disk image and a container image, both running an SSH
            # server: rebuild goes from one kind to the other
            'image_ref': ids[cloud.IMAGE_SSH],
            'image_ref_alt': ids[cloud.IMAGE_SSH_CONTAINER],
            'flavor_ref': flavor.id, 'flavor_ref_alt': flavor_alt.id,
            'fixed_network_name': hostnet.NET.network,
            'build_timeout': '300',
            # 2 with "tools/allinone start --computes 2": the migration
            # tests run (and the flags below say the driver moves servers)
            'min_compute_nodes': str(settings.computes()),
            'max_microversion': 'latest', 'region': settings.REGION},
        'compute-feature-enabled': dict(
            {k: str(v).lower() for k, v in driver_flags.items()},
            # a deployment fact: no metadata agent (ML2 macvtap, no L3 or
            # DHCP agents); the config drive carries the metadata
            metadata_service='false',
            scheduler_enabled_filters=','.join(nova.SCHEDULER_FILTERS)),
        'network': {'project_networks_reachable': 'false',
                    # the scenario tests that log in want one (the
                    # provider network, which the host reaches)
                    'public_network_id': state.load()['network'][
                        'network_id'],
                    'region': settings.REGION},
        'network-feature-enabled': {'floating_ips': 'false',
                                    'shared_physical_network': 'false'},
        'image': {'region': settings.REGION},
        'placement': {'region': settings.REGION},
        'validation': dict(VALIDATION, network_for_ssh=hostnet.NET.network),
        'service_available': {'nova': 'true', 'glance': 'true',
                              'neutron': 'true', 'placement': 'true',
                              'keystone': 'true', 'cinder': 'false',
                              'swift': 'false', 'horizon': 'false'},
    })
    os.makedirs(os.path.dirname(CONF), exist_ok=True)
    with open(os.open(CONF, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        c.write(f)


def driver_flags(machine_type='microvm'):
    """The flags, from the nova-clear installed in the all-in-one's venv
    (the code nova-compute runs), its nova-compute's configuration and the
    variant of tempest's flavors."""
    from tools.aio.services import nova_compute
    compute = configparser.ConfigParser(interpolation=None)
    compute.read(nova_compute.CONF)
    cmd = [settings.venv_tool('nova-clear-tempest-flags'),
           '--machine-type', machine_type,
           '--compute-nodes', str(settings.computes())]
    if compute.getboolean('serial_console', 'enabled', fallback=False):
        cmd.append('--serial-console')
    out = subprocess.run(cmd, check=True, capture_output=True,
                         text=True).stdout
    flags = {}
    for line in out.splitlines():
        section, option, value = line.split()
        if section == 'compute-feature-enabled':
            flags[option] = value == 'True'
    return flags


# run in the tempest venv: the last run's subunit stream -> JSON
_SUMMARY = r'''
import collections, json, sys
import subunit, testtools
out = {'passed': [], 'failed': [], 'skipped': collections.Counter(),
       'skipped_tests': {}}
def record(test):
    tid = test['id']
    if tid.startswith(('setUpClass', 'tearDownClass')) or \
            ' (' in tid and tid.split(' (')[0] in ('setUpClass',
                                                    'tearDownClass'):
        kind = 'fixture'
    else:
        kind = 'test'
    if test['status'] in ('success', 'xfail'):
        if kind == 'test':
            out['passed'].append(tid)
    elif test['status'] == 'skip':
        reason = test['details'].get('reason')
        text = reason.as_text() if reason else '?'
        out['skipped'][text.strip()[:160]] += 1
        out['skipped_tests'][tid] = text.strip()[:160]
    elif test['status'] in ('fail', 'uxsuccess'):
        out['failed'].append(tid)
stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer,
                                          non_subunit_name='stdout')
result = testtools.StreamToDict(record)
result.startTestRun()
stream.run(result)
result.stopTestRun()
json.dump(out, sys.stdout)
'''


def summarize():
    subunit_stream = subprocess.run(
        [tool('stestr'), 'last', '--subunit'], cwd=WORKSPACE,
        capture_output=True, check=True).stdout
    out = subprocess.run([tool('python'), '-c', _SUMMARY],
                         input=subunit_stream, capture_output=True,
                         check=True).stdout
    return json.loads(out)


def run(regex=None, smoke=False, concurrency=2, machine_type='microvm',
        exclude=None):
    """Run tempest with servers of ``machine_type``; returns the summary
    (also in RESULTS)."""
    st = state.load()
    if not st.get('ready'):
        raise process.Failure('the all-in-one is not up: run tools/allinone '
                              'start first')
    ensure_installed()
    flags = driver_flags(machine_type)
    write_conf(flags, machine_type)
    full = not smoke and not regex
    regex = SMOKE if smoke else (regex or FULL)
    cmd = [tool('tempest'), 'run', '--config-file', CONF, '--regex', regex,
           '--concurrency', str(concurrency)]
    excluded = {}
    if full:
        excluded[EXCLUDE_SLOW] = 'slow (run them with a REGEX)'
    if st.get('project_network_type') != 'vlan':
        excluded[PROJECT_NETWORK_TESTS] = NO_VLAN_REASON
    if exclude:
        excluded[exclude] = 'asked for (--exclude)'
    if excluded:
        cmd += ['--exclude-regex', '|'.join('(%s)' % r for r in excluded)]
    for pattern, reason in excluded.items():
        process.say('excluded %s: %s' % (pattern, reason))
    process.say('tempest %s, %s servers (%s): %s' % (
        TEMPEST_VERSION, machine_type, ', '.join(FLAVORS[machine_type]),
        ' '.join(cmd[2:])))
    process.say('enabled: %s' % ', '.join(sorted(k for k, v in flags.items()
                                                 if v)))
    process.say('disabled: %s' % ', '.join(sorted(
        k for k, v in flags.items() if not v)))
    log = os.path.join(settings.LOGS, 'tempest-run.log')
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=WORKSPACE, stdout=f,
                              stderr=subprocess.STDOUT)
    try:
        summary = summarize()
    except (subprocess.CalledProcessError, ValueError) as e:
        raise process.Failure('tempest ran no test (exit %d): %s'
                              % (proc.returncode, e), log)
    summary['regex'] = regex
    summary['machine_type'] = machine_type
    summary['excluded'] = excluded
    summary['exit'] = proc.returncode
    summary['flags'] = flags
    with open(RESULTS, 'w') as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    report(summary, log)
    return summary


def report(summary, log):
    skipped = summary['skipped']
    for name in summary['failed']:
        print('FAILED %s' % name)
    if skipped:
        print('skipped, by reason:')
        for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
            print('  %4d  %s' % (n, re.sub(r'\s+', ' ', reason)))
    print('tempest log: %s; results: %s' % (log, RESULTS))
    print('%d passed, %d failed, %d skipped' % (
        len(summary['passed']), len(summary['failed']),
        sum(skipped.values())))
