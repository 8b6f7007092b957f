"""The devstack plugin's guest networking (Q_AGENT=macvtap)."""

import os
import shlex
import subprocess
import tempfile

import testtools

from nova_clear.deploy import provider_net

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEVSTACK = os.path.join(ROOT, 'devstack')

# devstack's functions, stubbed: each call is echoed
STUBS = '''
set -eu
define_plugin() { :; }
is_service_enabled() { return 0; }
echo_summary() { echo "summary: $*"; }
iniset() { echo "iniset $*"; }
sudo() { echo "sudo $*"; }
ip() { return 1; }
openstack() { echo "openstack $*"; [[ $1 != --os-cloud ]] ||
    [[ $4 != show ]]; }
NOVA_CLEAR_BIN_DIR=%(bin)s
DEST=/opt/stack
NEUTRON_CORE_PLUGIN_CONF=etc/neutron/plugins/ml2/ml2_conf.ini
NEUTRON_BIN_DIR=/opt/stack/data/venv/bin
NOVA_CONF=/dev/null
source %(devstack)s/override-defaults
source %(devstack)s/settings
'''


def provider_net_call(out, action):
    """The arguments of the one stubbed ``sudo .../nova-clear-provider-net
    ACTION ...`` in ``out``."""
    calls = [shlex.split(line)[1:] for line in out.splitlines()
             if line.startswith('sudo ') and
             'nova-clear-provider-net' in line]
    assert len(calls) == 1, out
    assert calls[0][0].endswith('/nova-clear-provider-net'), calls
    assert calls[0][1] == action, calls
    return calls[0][1:]


def parse(argv):
    return provider_net._parser().parse_args(argv)


def run(script):
    with tempfile.TemporaryDirectory() as tmp:
        # nova-clear-configure, stubbed too
        with open(os.path.join(tmp, 'nova-clear-configure'), 'w') as f:
            f.write('#!/bin/sh\necho "nova-clear-configure $*"\n')
        os.chmod(os.path.join(tmp, 'nova-clear-configure'), 0o755)
        return subprocess.run(
            ['bash', '-c', STUBS % {'devstack': DEVSTACK, 'bin': tmp} +
             script], capture_output=True, text=True)


class TestDevstackMacvtap(testtools.TestCase):

    def test_post_config_with_macvtap(self):
        proc = run('Q_AGENT=macvtap\n'
                   'source %s/plugin.sh stack post-config\n'
                   'echo "AGENT_BINARY=$AGENT_BINARY"\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        out = proc.stdout
        conf = '/etc/neutron/plugins/ml2/ml2_conf.ini'
        self.assertIn('iniset %s macvtap physical_interface_mappings '
                      'clearnet:clearphys0' % conf, out)
        self.assertIn('iniset %s securitygroup firewall_driver noop' % conf,
                      out)
        self.assertIn('AGENT_BINARY=/opt/stack/data/venv/bin/python3 '
                      '/opt/stack/nova-clear/tools/macvtap_agent.py', out)
        # the veth pair and the provider namespace: nova-clear's console
        # script, with the settings' defaults (the module's own)
        argv = provider_net_call(out, 'up')
        self.assertEqual(provider_net.plan(),
                         provider_net.plan_from_args(parse(argv)))
        self.assertNotIn('sudo ip ', out)

    def test_post_config_with_a_real_nic(self):
        proc = run('Q_AGENT=macvtap\nNOVA_CLEAR_PROVIDER_VETH=False\n'
                   'NOVA_CLEAR_MACVTAP_INTERFACE=eth1\n'
                   'source %s/plugin.sh stack post-config\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('physical_interface_mappings clearnet:eth1',
                      proc.stdout)
        self.assertNotIn('sudo ip', proc.stdout)
        self.assertNotIn('provider-net', proc.stdout)

    def test_post_config_without_macvtap(self):
        proc = run('Q_AGENT=ovn\n'
                   'source %s/plugin.sh stack post-config\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertNotIn('macvtap', proc.stdout)
        self.assertNotIn('sudo ip', proc.stdout)
        self.assertNotIn('provider-net', proc.stdout)

    def test_settings_other_than_the_defaults(self):
        proc = run('Q_AGENT=macvtap\nNOVA_CLEAR_MACVTAP_INTERFACE=physx\n'
                   'NOVA_CLEAR_PROVIDER_NETNS=provx\n'
                   'NOVA_CLEAR_NETWORK_CIDR=10.9.8.0/24\n'
                   'NOVA_CLEAR_NETWORK_GATEWAY=10.9.8.254\n'
                   'NOVA_CLEAR_SUBNET6=\n'
                   'source %s/plugin.sh stack post-config\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        p = provider_net.plan_from_args(parse(
            provider_net_call(proc.stdout, 'up')))
        self.assertEqual(provider_net.plan(
            device='physx', netns='provx', cidr='10.9.8.0/24',
            gateway='10.9.8.254', cidr6=None), p)

    def test_unstack_removes_the_pair(self):
        proc = run('Q_AGENT=macvtap\nvirsh() { :; }\n'
                   'source %s/plugin.sh unstack\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        argv = provider_net_call(proc.stdout, 'down')
        args = parse(argv)
        self.assertFalse(args.force)
        self.assertEqual(provider_net.plan(),
                         provider_net.plan_from_args(args))

    def test_settings_defaults_are_the_modules(self):
        proc = run('echo "$NOVA_CLEAR_PHYSICAL_NETWORK '
                   '$NOVA_CLEAR_MACVTAP_INTERFACE $NOVA_CLEAR_PROVIDER_PEER '
                   '$NOVA_CLEAR_PROVIDER_NETNS $NOVA_CLEAR_NETWORK '
                   '$NOVA_CLEAR_SUBNET $NOVA_CLEAR_SUBNET6 '
                   '$NOVA_CLEAR_NETWORK_CIDR $NOVA_CLEAR_NETWORK_GATEWAY '
                   '$NOVA_CLEAR_NETWORK_POOL $NOVA_CLEAR_NETWORK6_CIDR '
                   '$NOVA_CLEAR_NETWORK6_GATEWAY"\n')
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        p = provider_net.plan()
        self.assertEqual(
            [p.physnet, p.device, p.peer, p.netns, p.network, p.subnet,
             p.subnet6, p.cidr, p.gateway, 'start=%s,end=%s' % p.pool,
             p.cidr6, p.gateway6], proc.stdout.split())

    def test_provider_network(self):
        proc = run('Q_AGENT=macvtap\n'
                   'source %s/plugin.sh\ncreate_nova_clear_network\n'
                   % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('openstack --os-cloud devstack-admin network create '
                      '--share '
                      '--provider-network-type flat '
                      '--provider-physical-network clearnet clear-net',
                      proc.stdout)
        self.assertIn('openstack --os-cloud devstack-admin subnet create '
                      '--network clear-net '
                      '--subnet-range 10.77.0.0/24 --gateway 10.77.0.1 '
                      '--allocation-pool start=10.77.0.10,end=10.77.0.250 '
                      '--no-dhcp --dns-nameserver 10.77.0.1 clear-subnet',
                      proc.stdout)
        self.assertIn('openstack --os-cloud devstack-admin subnet create '
                      '--network clear-net --ip-version 6 '
                      '--subnet-range fd00:77::/64 --gateway fd00:77::1 '
                      '--no-dhcp clear-subnet6', proc.stdout)
