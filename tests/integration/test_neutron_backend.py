"""The all-in-one's Neutron backend: ML2 macvtap + the macvtap agent.

No server is booted: ports are bound to the compute host through the API
(as nova does), and a macvtap device on the provider interface stands in
for the one libvirt makes for a guest.
"""

import json
import os
import subprocess
import time
import uuid

from tests.integration import base


def ip(*args, check=True):
    return subprocess.run(['ip'] + list(args), capture_output=True,
                          text=True, check=check)


class TestNeutronBackend(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        self.net = self.state.get('network')
        if not self.net or not self.net.get('network_id'):
            self.skipTest('the all-in-one has no provider network: run '
                          'tools/allinone start')
        self.host = self.state['compute_host']

    def port(self, network_id, **kwargs):
        port = self.conn.network.create_port(
            network_id=network_id, binding_host_id=self.host,
            device_owner='compute:nova', name=self.name('port'), **kwargs)
        self.addCleanup(self.conn.network.delete_port, port,
                        ignore_missing=True)
        return port

    def netns(self, tag):
        name = 'it-%s-%s' % (tag, uuid.uuid4().hex[:6])
        ip('netns', 'add', name)
        self.addCleanup(ip, 'netns', 'del', name, check=False)
        return name

    def test_agent_alive(self):
        agents = list(self.conn.network.agents(
            host=self.host, agent_type='Macvtap agent'))
        self.assertEqual(1, len(agents), agents)
        self.assertTrue(agents[0].is_alive)
        self.assertEqual(
            {self.net['physnet']: self.net['physical_interface']},
            agents[0].configuration['interface_mappings'])

    def test_provider_network(self):
        net = self.conn.network.get_network(self.net['network_id'])
        self.assertEqual(('clear-net', 'flat', 'clearnet', True),
                         (net.name, net.provider_network_type,
                          net.provider_physical_network, net.is_shared))
        sub = self.conn.network.get_subnet(self.net['subnet_id'])
        self.assertEqual('clear-subnet', sub.name)
        self.assertEqual('10.77.0.0/24', sub.cidr)
        self.assertEqual('10.77.0.1', sub.gateway_ip)
        self.assertFalse(sub.is_dhcp_enabled)
        self.assertEqual([{'start': '10.77.0.10', 'end': '10.77.0.250'}],
                         sub.allocation_pools)
        self.assertEqual(['10.77.0.1'], sub.dns_nameservers)

    def test_port_binds_macvtap(self):
        port = self.port(self.net['network_id'])
        self.assertEqual('macvtap', port.binding_vif_type)
        details = port.binding_vif_details
        self.assertEqual('clearphys0', details['macvtap_source'])
        self.assertEqual('bridge', details['macvtap_mode'])
        self.assertEqual('clearphys0', details['physical_interface'])
        self.assertEqual('DOWN', port.status)

    def test_port_on_unmapped_physnet_fails_binding(self):
        net = self.conn.network.create_network(
            name='clear-unbound', provider_network_type='flat',
            provider_physical_network='unmapped')
        self.addCleanup(self.conn.network.delete_network, net,
                        ignore_missing=True)
        self.conn.network.create_subnet(
            network_id=net.id, ip_version=4, cidr='10.78.0.0/24',
            is_dhcp_enabled=False)
        port = self.port(net.id)
        self.assertEqual('binding_failed', port.binding_vif_type)

    def test_macvtap_device_makes_port_active(self):
        """The agent finds a guest's macvtap device by its MAC address.

        libvirt makes such a device (macvtapN, the port's MAC, on the
        macvtap_source) for <interface type='direct'>; the agent reports
        it up and Neutron sets the port ACTIVE, which is when it sends nova
        network-vif-plugged.  Here the port's device is no server, so
        nova answers that event with 404 -- which shows that neutron
        reached nova's API with the nova user's credentials.
        """
        server_id = str(uuid.uuid4())
        port = self.port(self.net['network_id'], device_id=server_id)
        dev = 'macvtap%d' % (900 + uuid.uuid4().int % 99)
        ip('link', 'add', 'link', self.net['physical_interface'], 'name',
           dev, 'address', port.mac_address, 'type', 'macvtap', 'mode',
           'bridge')
        self.addCleanup(ip, 'link', 'del', dev, check=False)
        ip('link', 'set', dev, 'up')
        t0 = time.monotonic()
        deadline = t0 + 30
        while True:
            status = self.conn.network.get_port(port.id).status
            if status == 'ACTIVE':
                break
            if time.monotonic() > deadline:
                self.fail('port with a macvtap device still %s after 30s'
                          % status)
            time.sleep(0.2)
        log = os.path.join(self.state['logs'], 'neutron-rpc-server.log')
        deadline = time.monotonic() + 30
        while True:
            with open(log, errors='replace') as f:
                events = [line for line in f if server_id in line and
                          'network-vif-plugged' in line]
            if events:
                break
            if time.monotonic() > deadline:
                self.fail('neutron sent nova no network-vif-plugged for '
                          '%s in 30s (%s)' % (server_id, log))
            time.sleep(0.5)
        self.assertIn("'code': 404", events[0])
        ip('link', 'del', dev)
        deadline = time.monotonic() + 30
        while self.conn.network.get_port(port.id).status != 'DOWN':
            if time.monotonic() > deadline:
                self.fail('port still ACTIVE 30s after its device went')
            time.sleep(0.2)

    def test_provider_namespace_reachable_over_the_lower_device(self):
        """A macvlan in bridge mode on clearphys0 reaches the gateway."""
        ns = self.netns('l2')
        dev = 'itmv%s' % uuid.uuid4().hex[:6]
        ip('link', 'add', 'link', self.net['physical_interface'], 'name',
           dev, 'type', 'macvlan', 'mode', 'bridge')
        ip('link', 'set', dev, 'netns', ns)
        # outside the allocation pool: no port has it
        ip('-n', ns, 'addr', 'add', '10.77.0.5/24', 'dev', dev)
        ip('-n', ns, 'link', 'set', dev, 'up')
        gateway = self.net['gateway']
        send = ('import socket; s = socket.socket(socket.AF_INET, '
                'socket.SOCK_DGRAM); s.sendto(b"x", ("%s", 9))' % gateway)
        deadline = time.monotonic() + 10
        while True:
            subprocess.run(['ip', 'netns', 'exec', ns, 'python3', '-c',
                            send], check=False, capture_output=True)
            neigh = json.loads(ip('-n', ns, '-j', 'neigh', 'show',
                                  gateway).stdout or '[]')
            if neigh and neigh[0].get('lladdr') and \
                    'FAILED' not in neigh[0].get('state', ()):
                break
            if time.monotonic() > deadline:
                self.fail('no ARP answer from %s in %s: %s' % (
                    gateway, self.net['netns'], neigh))
            time.sleep(0.5)
        # the answer comes from the provider namespace's device holding the
        # gateway: the veth peer, or the bridge over the hosts' peers once
        # a second compute host has joined (tools/allinone --computes 2)
        links = json.loads(ip('-n', self.net['netns'], '-j', 'addr',
                              'show').stdout)
        holders = [link for link in links
                   if any(a.get('local') == gateway
                          for a in link.get('addr_info', ()))]
        self.assertEqual(1, len(holders), links)
        self.assertEqual(holders[0]['address'], neigh[0]['lladdr'])
