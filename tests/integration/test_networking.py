"""Servers on the all-in-one's provider network (Neutron ML2 macvtap).

Traffic stays on this machine: the guests, and the provider namespace
(``nova-clear-provider``, holding the network's gateway address) standing
in for a client.
"""

import json
import os
import subprocess
import sys
import time

from openstack import exceptions as sdk_exc

from tests.integration import base

SERVER_CMD = (
    'mkdir -p /tmp/www && echo "page from $(hostname)" > /tmp/www/index.html'
    ' && echo serving && exec /bin/busybox httpd -f -p 80 -h /tmp/www')
# busybox 1.35's wget crashes with -T: retry without it
CLIENT_CMD = (
    'for i in $(/bin/busybox seq 1 100); do'
    ' /bin/busybox wget -q -O - http://%s/ && break; sleep 0.3; done;'
    ' echo client-done')


def macvtaps():
    """MAC addresses of the host's macvtap devices."""
    out = subprocess.run(['ip', '-j', 'link', 'show', 'type', 'macvtap'],
                         capture_output=True, text=True, check=True).stdout
    return {link.get('address') for link in json.loads(out or '[]')}


class NetworkingTestCase(base.IntegrationTestCase):
    """Servers on the all-in-one's provider network, and how to reach
    them."""

    def setUp(self):
        super().setUp()
        self.net = self.state.get('network') or {}
        if not self.net.get('network_id'):
            self.skipTest('the all-in-one has no provider network: run '
                          'tools/allinone up')

    def boot(self, tag, image, network_id=None, wait=True):
        server = self.conn.compute.create_server(
            name=self.name(tag), image_id=image.id,
            flavor_id=self.flavor().id,
            networks=[{'uuid': network_id or self.net['network_id']}])
        self.addCleanup(self.delete, server.id)
        return self.wait_status(server, 'ACTIVE') if wait else server

    def address(self, server, version=4):
        addrs = server.addresses[self.net['network']]
        return [a['addr'] for a in addrs if a['version'] == version][0]

    def ports(self, server):
        return list(self.conn.network.ports(device_id=server.id))

    def network_line(self, text, mac):
        """The agent's ``nova-clear: network eth0 MAC mtu 1500 ADDR...``
        line for ``mac``."""
        prefix = 'nova-clear: network eth0 %s mtu 1500 ' % mac
        lines = [line for line in text.splitlines()
                 if line.startswith(prefix)]
        self.assertEqual(1, len(lines), text)
        return lines[0]

    def http_get(self, url, deadline=120):
        """GET from the provider namespace until it answers."""
        script = ('import sys, urllib.request; sys.stdout.write(urllib.'
                  'request.urlopen(sys.argv[1], timeout=3).read().decode())')
        end = time.monotonic() + deadline
        while True:
            proc = subprocess.run(
                ['ip', 'netns', 'exec', self.net['netns'], sys.executable,
                 '-c', script, url], capture_output=True, text=True,
                timeout=30)
            if proc.returncode == 0:
                return proc.stdout
            if time.monotonic() > end:
                self.fail('%s did not answer from %s: %s' % (
                    url, self.net['netns'], proc.stderr[-500:]))
            time.sleep(0.5)


class TestNetworking(NetworkingTestCase):

    def test_service_reachable_guests_reach_each_other_delete_unplugs(self):
        server = self.boot('web', self.container_image(SERVER_CMD))
        ip = self.address(server)
        ports = self.ports(server)
        self.assertEqual(1, len(ports))
        port = ports[0]
        self.assertEqual('macvtap', port.binding_vif_type)
        self.assertEqual(self.state['compute_host'], port.binding_host_id)
        self.assertEqual('ACTIVE', port.status)
        text = self.wait_console(server, 'serving')
        self.assertIn('%s/24' % ip, self.network_line(
            text, port.mac_address).split())
        self.assertIn(port.mac_address, macvtaps())
        # a client on the network reaches the container's service
        self.assertEqual('page from %s\n' % server.hostname,
                         self.http_get('http://%s/' % ip))

        client = self.boot('client', self.container_image(CLIENT_CMD % ip))
        text = self.wait_console(client, 'client-done')
        self.assertIn('page from %s' % server.hostname, text)
        client_mac = self.ports(client)[0].mac_address

        for s in (server, client):
            self.delete(s.id)
            self.assert_gone_from_host(s.id)
        left = macvtaps() & {port.mac_address, client_mac}
        self.assertEqual(set(), left, 'macvtap devices left behind')
        self.assertEqual([], self.ports(server) + self.ports(client))

    def test_dual_stack(self):
        if not self.net.get('subnet6_id'):
            self.skipTest('the all-in-one has no IPv6 subnet: run '
                          'tools/allinone up')
        server = self.boot('web6', self.container_image(SERVER_CMD))
        ip4, ip6 = self.address(server), self.address(server, 6)
        text = self.wait_console(server, 'serving')
        mac = self.ports(server)[0].mac_address
        # in the order of the subnets in network_info (Neutron's, by
        # subnet id: either family may come first)
        addresses = self.network_line(text, mac).split()[6:]
        self.assertEqual(sorted(['%s/24' % ip4, '%s/64' % ip6]),
                         sorted(addresses))
        self.assertNotIn('warning', text)
        # IPv6 neighbour discovery reaches the guest (the macvtap agent
        # sets ALLMULTICAST on its macvtap)
        for url in ('http://%s/' % ip4, 'http://[%s]/' % ip6):
            self.assertEqual('page from %s\n' % server.hostname,
                             self.http_get(url))

    def test_port_that_fails_to_bind_faults_the_server(self):
        # a flat network on a physical network the host's agent does not map
        net = self.conn.network.create_network(
            name=self.name('unbound'), provider_network_type='flat',
            provider_physical_network='unmapped-%s' % self.name('p')[-6:])
        self.addCleanup(self.conn.network.delete_network, net,
                        ignore_missing=True)
        self.conn.network.create_subnet(
            network_id=net.id, ip_version=4, cidr='10.78.0.0/24',
            enable_dhcp=False)
        server = self.boot('unbound', self.conn.image.get_image(
            self.images['clear-busybox']), network_id=net.id, wait=False)
        server = self.wait_status(server, 'ERROR')
        fault = (server.fault or {}).get('message', '')
        self.assertIn('Binding failed for port', fault)
        self.delete(server.id)
        self.assert_gone_from_host(server.id)

    def test_attach_interface_refused_on_microvm(self):
        image = self.conn.image.get_image(self.images['clear-busybox'])
        server = self.boot('attach', image)
        port = self.conn.network.create_port(
            network_id=self.net['network_id'], name=self.name('port'))
        self.addCleanup(self.conn.network.delete_port, port,
                        ignore_missing=True)
        # the host hot-plugs (its q35 variant does), so Nova asks the
        # driver, which refuses this microvm server; nova-compute turns any
        # driver refusal into InterfaceAttachFailed (HTTP 500, the action's
        # event an Error) and logs the driver's reason
        err = self.assertRaises(
            sdk_exc.HttpException, self.conn.compute.create_server_interface,
            server, port_id=port.id)
        self.assertEqual(500, err.status_code)
        self.assertIn('Failed to attach network adapter device', str(err))
        actions = [a for a in self.conn.compute.server_actions(server)
                   if a.action == 'attach_interface']
        self.assertEqual(1, len(actions))
        detail = self.conn.compute.get_server_action(actions[0].request_id,
                                                     server)
        events = [e for e in detail.events
                  if e['event'] == 'compute_attach_interface']
        self.assertEqual('Error', events[0]['result'])
        with open(os.path.join(self.state['logs'], 'nova-compute.log')) as f:
            reasons = [line for line in f
                       if 'attach interface failed' in line and
                       server.id in line]
        self.assertIn('no hot-plug bus', reasons[-1])
        self.assertIn('clear:machine_type=q35', reasons[-1])
        self.assertEqual(1, len(self.ports(server)))
        self.assertIsNone(self.conn.network.get_port(port).device_id or None)
        self.assertEqual('ACTIVE', self.conn.compute.get_server(
            server).status)


class TestProjectNetworks(NetworkingTestCase):
    """Project networks are VLANs on the provider's physical network:
    their macvtaps sit on ``<physical interface>.<vlan>``, which
    nova-compute makes (through privsep) before the guest starts."""

    def test_two_nics_and_a_vlan_network(self):
        if self.state.get('project_network_type') != 'vlan':
            self.skipTest('project networks are %s here: this host\'s '
                          'kernel makes no 802.1Q VLAN devices'
                          % self.state.get('project_network_type'))
        net = self.conn.network.create_network(name=self.name('vlan'))
        self.addCleanup(self.conn.network.delete_network, net,
                        ignore_missing=True)
        self.assertEqual('vlan', net.provider_network_type)
        subnet = self.conn.network.create_subnet(
            network_id=net.id, ip_version=4, cidr='10.79.%d.0/24'
            % (net.provider_segmentation_id % 250), enable_dhcp=False,
            gateway_ip=None)
        self.addCleanup(self.conn.network.delete_subnet, subnet,
                        ignore_missing=True)
        server = self.conn.compute.create_server(
            name=self.name('web2'), flavor_id=self.flavor().id,
            image_id=self.container_image(SERVER_CMD).id,
            networks=[{'uuid': self.net['network_id']}, {'uuid': net.id}])
        self.addCleanup(self.delete, server.id)
        server = self.wait_status(server, 'ACTIVE')
        vlan_dev = '%s.%d' % (self.net['physical_interface'],
                              net.provider_segmentation_id)
        link = subprocess.run(['ip', '-d', 'link', 'show', vlan_dev],
                              capture_output=True, text=True)
        self.assertEqual(0, link.returncode, link.stderr)
        self.assertIn('vlan protocol 802.1Q id %d'
                      % net.provider_segmentation_id, link.stdout)
        text = self.wait_console(server, 'serving')
        vlan_ip = [a['addr'] for a in server.addresses[net.name]][0]
        eth1 = [line for line in text.splitlines()
                if line.startswith('nova-clear: network eth1 ')]
        self.assertEqual(1, len(eth1), text)
        self.assertIn('%s/24' % vlan_ip, eth1[0].split())
        # another guest on the VLAN only reaches it there
        client = self.conn.compute.create_server(
            name=self.name('vclient'), flavor_id=self.flavor().id,
            image_id=self.container_image(CLIENT_CMD % vlan_ip).id,
            networks=[{'uuid': net.id}])
        self.addCleanup(self.delete, client.id)
        client = self.wait_status(client, 'ACTIVE')
        text = self.wait_console(client, 'client-done')
        self.assertIn('page from %s' % server.hostname, text)
        for s in (server, client):
            self.delete(s.id)
            self.assert_gone_from_host(s.id)


class TestInterfaceHotplug(NetworkingTestCase):
    """Interface attach/detach through Nova on the q35 (PCI) variant, and
    one port moved from one server to another, as tempest's
    test_reassign_port_between_servers does (which tempest itself skips
    here: it wants SSH validation, which needs floating IPs)."""

    def boot_pci(self, tag):
        server = self.conn.compute.create_server(
            name=self.name(tag), flavor_id=self.flavor('clear.tiny.pci').id,
            image_id=self.container_image(
                'echo pci-up; exec sleep 3600').id,
            networks=[{'uuid': self.net['network_id']}])
        self.addCleanup(self.delete, server.id)
        server = self.wait_status(server, 'ACTIVE')
        self.wait_console(server, 'pci-up')
        return server

    def wait_port(self, port, device_id, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            port = self.conn.network.get_port(port)
            if (port.device_id or None) == device_id:
                return port
            if time.monotonic() > deadline:
                self.fail('port %s: device_id %r, not %r' % (
                    port.id, port.device_id, device_id))
            time.sleep(1)

    def test_attach_detach_and_reassign_a_port(self):
        first, second = self.boot_pci('hot1'), self.boot_pci('hot2')
        port = self.conn.network.create_port(
            network_id=self.net['network_id'], name=self.name('hotport'))
        self.addCleanup(self.conn.network.delete_port, port,
                        ignore_missing=True)
        for server in (first, second):
            self.conn.compute.create_server_interface(server,
                                                      port_id=port.id)
            port = self.wait_port(port, server.id)
            self.assertEqual('macvtap', port.binding_vif_type)
            self.assertEqual(2, len(list(
                self.conn.compute.server_interfaces(server))))
            self.assertIn(port.mac_address, macvtaps())
            self.conn.compute.delete_server_interface(port.id, server)
            self.wait_port(port, None)
            deadline = time.monotonic() + 60
            while port.mac_address in macvtaps():
                self.assertLess(time.monotonic(), deadline,
                                'the detached macvtap stayed')
                time.sleep(1)
            self.assertEqual(1, len(list(
                self.conn.compute.server_interfaces(server))))
            self.assertEqual('ACTIVE',
                             self.conn.compute.get_server(server).status)
