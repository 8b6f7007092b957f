"""Base of the integration tests that need the all-in-one's two compute
hosts (``tools/allinone start --computes 2``; skipped with one host).

What the host of a server has of it, seen from this machine: the libvirt
domain (host 1: ``qemu:///system``, host 2: its own libvirtd's socket),
the instance directory under that host's instances path (and a
``<uuid>_resize`` one during a resize), and the macvtap device with the
port's MAC on that host's provider interface (host 1 ``clearphys0``,
host 2 ``clearphys1``).
"""

import json
import os
import subprocess
import time

import libvirt

from tests.integration import base


class TwoHostsTestCase(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        if int(self.state.get('computes') or 1) < 2:
            self.skipTest('the all-in-one runs one compute host: '
                          'tools/allinone start --computes 2')
        self.net = self.state['network']
        self.host1, self.host2 = self.state['hosts'][:2]
        self.host2_state = self.state['host2']

    # -- servers ---------------------------------------------------------

    def boot_on(self, tag, host, cmd, ready, flavor='clear.tiny'):
        """A container server running ``cmd`` on ``host``, on the provider
        network, ACTIVE with ``ready`` in its console."""
        image = self.container_image(cmd, tag)
        server = self.conn.compute.create_server(
            name=self.name(tag), image_id=image.id,
            flavor_id=self.flavor(flavor).id,
            networks=[{'uuid': self.net['network_id']}],
            availability_zone='nova:%s' % host)
        self.addCleanup(self.delete, server.id)
        server = self.wait_status(server, 'ACTIVE')
        self.assertEqual(host, server.compute_host)
        self.wait_console(server, ready)
        return server

    def other(self, host):
        return self.host2 if host == self.host1 else self.host1

    def address(self, server):
        return [a['addr'] for a in server.addresses[self.net['network']]
                if a['version'] == 4][0]

    def mac(self, server):
        return list(self.conn.network.ports(
            device_id=server.id))[0].mac_address

    def wait_host(self, server, host, status='ACTIVE',
                  timeout=base.TIMEOUT):
        """``server`` is ``status`` (no task) on ``host``."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.conn.compute.get_server(server.id)
            if server.status == status and not server.task_state and \
                    server.compute_host == host:
                return server
            if server.status == 'ERROR':
                self.fail('%s went to ERROR: %s' % (server.name,
                                                    server.fault))
            if time.monotonic() > deadline:
                self.fail('%s is %s/%s on %s, not %s on %s after %ds'
                          % (server.name, server.status, server.task_state,
                             server.compute_host, status, host, timeout))
            time.sleep(0.2)

    # -- the hosts -------------------------------------------------------

    def host_side(self, host):
        """(libvirt URI, instances path, provider interface) of ``host``."""
        if host == self.host1:
            return 'qemu:///system', self.state['instances_path'], \
                self.net['physical_interface']
        return self.host2_state['libvirt_uri'], \
            self.host2_state['instances_path'], \
            self.host2_state['physical_interface']

    def domain_state(self, host, server_id):
        uri = self.host_side(host)[0]
        conn = libvirt.open(uri)
        try:
            return conn.lookupByUUIDString(server_id).state()[0]
        except libvirt.libvirtError:
            return None
        finally:
            conn.close()

    def macvtap_links(self):
        """[(MAC, lower device)] of this machine's macvtap devices."""
        out = subprocess.run(['ip', '-j', '-d', 'link', 'show', 'type',
                              'macvtap'], capture_output=True, text=True,
                             check=True).stdout
        return [(link.get('address'), link.get('link'))
                for link in json.loads(out or '[]')]

    def macvtaps(self):
        """{MAC: lower device} of the host's macvtap devices."""
        return dict(self.macvtap_links())

    def left_on(self, host, server_id, mac):
        """What ``host`` still has of the server: its domain, instance
        directory (or ``_resize`` one), a macvtap with its MAC there."""
        left = []
        if self.domain_state(host, server_id) is not None:
            left.append('domain')
        path, dev = self.host_side(host)[1:]
        for suffix in ('', '_resize'):
            if os.path.exists(os.path.join(path, server_id + suffix)):
                left.append('instance directory %s' % (server_id + suffix))
        if (mac, dev) in self.macvtap_links():
            left.append('macvtap %s on %s' % (mac, dev))
        return left

    def assert_nothing_on(self, host, server, timeout=30, mac=None):
        mac = mac or self.mac(server)
        deadline = time.monotonic() + timeout
        while True:
            left = self.left_on(host, server.id, mac)
            if not left:
                return
            if time.monotonic() > deadline:
                self.fail('%s: left on %s: %s' % (server.name, host,
                                                  ', '.join(left)))
            time.sleep(0.5)

    def assert_on(self, server, host, timeout=30):
        """Running on ``host`` (domain, files, macvtap on its interface)
        and nothing of it on the other."""
        other = self.other(host)
        server = self.conn.compute.get_server(server.id)
        self.assertEqual(host, server.compute_host)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_state(host, server.id))
        _uri, path, dev = self.host_side(host)
        self.assertTrue(os.path.isdir(os.path.join(path, server.id)))
        mac = self.mac(server)
        deadline = time.monotonic() + timeout
        while True:
            left = self.left_on(other, server.id, mac)
            taps = self.macvtap_links()
            if (mac, dev) not in taps:
                left.append('no macvtap %s on %s (%s)' % (
                    mac, dev, [t for t in taps if t[0] == mac]))
            if not left:
                return
            if time.monotonic() > deadline:
                self.fail('%s on %s: left on %s: %s' % (
                    server.name, host, other, ', '.join(left)))
            time.sleep(0.5)

    def compute_service(self, host):
        services = list(self.conn.compute.services(binary='nova-compute',
                                                   host=host))
        self.assertEqual(1, len(services), services)
        return services[0]

    def pid_of(self, name):
        """The PID of the all-in-one's process ``name`` (its PID file:
        ``<pid> <start time>``), or None when it no longer runs."""
        path = os.path.join(self.state['home'], 'run', '%s.pid' % name)
        try:
            with open(path) as f:
                pid, begun = f.read().split(None, 1)
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, ValueError):
            return None
        if fields[19] != begun.strip() or fields[0] == 'Z':
            return None
        return int(pid)
