"""The devstack plugin's guest networking (Q_AGENT=macvtap)."""

import os
import subprocess
import tempfile

import testtools

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
        # the veth pair and the provider namespace
        self.assertIn('sudo ip netns add nova-clear-provider', out)
        self.assertIn('sudo ip link add clearphys0 type veth peer name '
                      'clearpeer0 netns nova-clear-provider', out)
        self.assertIn('sudo ip -n nova-clear-provider addr add '
                      '10.77.0.1/24 dev clearpeer0', out)

    def test_post_config_with_a_real_nic(self):
        proc = run('Q_AGENT=macvtap\nNOVA_CLEAR_PROVIDER_VETH=False\n'
                   'NOVA_CLEAR_MACVTAP_INTERFACE=eth1\n'
                   'source %s/plugin.sh stack post-config\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('physical_interface_mappings clearnet:eth1',
                      proc.stdout)
        self.assertNotIn('sudo ip', proc.stdout)

    def test_post_config_without_macvtap(self):
        proc = run('Q_AGENT=ovn\n'
                   'source %s/plugin.sh stack post-config\n' % DEVSTACK)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertNotIn('macvtap', proc.stdout)
        self.assertNotIn('sudo ip', proc.stdout)

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
