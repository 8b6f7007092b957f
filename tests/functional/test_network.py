"""Ports plugged for real: macvtap devices on a veth provider network made
by the test, virtio-net in the Clear Container, the agent's static
configuration; traffic only between the guests and a namespace."""

import json
import os
import signal
import time

from nova.compute import power_state
from nova.network import model as network_model

from nova_clear import exception as clear_exc
from tests.functional import base
from tests.functional import images
from tests.functional import provider_net
from tests.functional import test_lifecycle
from tests.unit.test_network import make_vif

SERVER_CMD = (
    'mkdir -p /tmp/www && echo "page from $(hostname)" > /tmp/www/index.html'
    ' && cat /etc/resolv.conf && /bin/busybox ip route'
    ' && echo serving && exec /bin/busybox httpd -f -p 80 -h /tmp/www')
CLIENT_CMD = (
    'for i in $(/bin/busybox seq 1 100); do'
    ' /bin/busybox wget -q -O - http://%s/ && break; sleep 0.3; done;'
    ' echo client-done')


class TestNetwork(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(provider_net.ProviderNetwork())
        self.drv = self.make_driver()

    def _vif(self, n, **kw):
        values = dict(port='port-%d' % n, mac='fa:16:3e:79:00:%02x' % n,
                      source=self.net.lower, mtu=1500,
                      cidr='%s.0/24' % self.net.prefix,
                      ip=self.net.address(n), gateway=self.net.gateway,
                      dns=(self.net.gateway,), active=True)
        values.update(kw)
        return make_vif(**values)

    def _container(self, cmd):
        return self.glance.add(
            images.container_image('docker'), 'raw',
            container_format='docker',
            properties={'clear_cmd': json.dumps([cmd]),
                        'clear_user': 'root'})

    def _spawn(self, image_id, network_info):
        inst = self.make_instance(image_id)
        self.drv.spawn(self.context, inst, self.glance.image_meta(image_id),
                       [], None, {}, network_info=network_info)
        self.addCleanup(self._destroy_quietly, self.drv, inst)
        return inst

    def test_container_service_reachable_and_guests_reach_each_other(self):
        server_vif = self._vif(11)
        server = self._spawn(self._container(SERVER_CMD), [server_vif])
        text = self.wait_console(self.drv, server, 'serving')
        self.assertIn('nova-clear: network eth0 fa:16:3e:79:00:0b mtu 1500 '
                      '%s/24' % self.net.address(11), text)
        self.assertIn('nameserver %s' % self.net.gateway, text)
        self.assertIn('default via %s dev eth0' % self.net.gateway, text)
        # a client in the provider namespace reaches the container's httpd
        page = self.net.http_get('http://%s/' % self.net.address(11))
        self.assertEqual('page from %s\n' % server.hostname, page)

        client_vif = self._vif(12)
        client = self._spawn(
            self._container(CLIENT_CMD % self.net.address(11)), [client_vif])
        # one macvtap each (the client's goes when its workload ends and
        # the guest powers off)
        self.assertEqual(2, len(provider_net.macvtaps_with(
            [server_vif['address'], client_vif['address']])))
        text = self.wait_console(self.drv, client, 'client-done')
        self.assertIn('page from %s' % server.hostname, text)

        for inst in (server, client):
            self.drv.destroy(self.context, inst, [server_vif, client_vif])
            self.assert_gone(self.drv, inst)
        self.assertEqual([], provider_net.macvtaps_with(
            [server_vif['address'], client_vif['address']]))

    def test_port_survives_reboot_power_cycle_and_killed_qemu(self):
        vif = self._vif(21)
        inst = self._spawn(self._container(SERVER_CMD), [vif])
        self.wait_console(self.drv, inst, 'serving')
        self.drv.reboot(self.context, inst, [vif], 'HARD')
        self.wait_console(self.drv, inst, 'serving', count=2)
        self.net.http_get('http://%s/' % self.net.address(21))
        self.drv.power_off(inst)
        self.assertEqual([], provider_net.macvtaps_with([vif['address']]))
        self.drv.power_on(self.context, inst, [vif])
        self.wait_console(self.drv, inst, 'serving', count=3)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.net.http_get('http://%s/' % self.net.address(21))
        # QEMU killed: libvirt removes the macvtap with it; power on again
        os.kill(test_lifecycle._qemu_pid(inst.uuid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (self.drv.get_info(inst).state != power_state.SHUTDOWN or
               provider_net.macvtaps_with([vif['address']])):
            self.assertLess(time.monotonic(), deadline,
                            'QEMU killed: still %s, macvtaps %s' % (
                                self.drv.get_info(inst).state,
                                provider_net.macvtaps_with([vif['address']])))
            time.sleep(0.2)
        self.drv.power_on(self.context, inst, [vif])
        self.wait_console(self.drv, inst, 'serving', count=4)
        self.net.http_get('http://%s/' % self.net.address(21))
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)
        self.assertEqual([], provider_net.macvtaps_with([vif['address']]))

    def test_dual_stack(self):
        v6 = network_model.Subnet(
            cidr='%s/64' % self.net.prefix6,
            ips=[network_model.FixedIP(address=self.net.address6(41))],
            gateway=network_model.IP(address=self.net.gateway6),
            dns=[network_model.IP(address=self.net.gateway6)])
        vif = self._vif(41, extra_subnets=[v6])
        inst = self._spawn(self._container(SERVER_CMD), [vif])
        # no Neutron here: do what its macvtap agent does for IPv6
        provider_net.allmulticast_like_the_agent(vif['address'])
        text = self.wait_console(self.drv, inst, 'serving')
        self.assertIn('%s/24 %s/64' % (self.net.address(41),
                                       self.net.address6(41)), text)
        self.assertNotIn('warning', text)
        self.assertIn('nameserver %s' % self.net.gateway6, text)
        for url in ('http://%s/' % self.net.address(41),
                    'http://[%s]/' % self.net.address6(41)):
            self.assertEqual('page from %s\n' % inst.hostname,
                             self.net.http_get(url))

    def test_missing_source_device_is_refused_and_leaves_nothing(self):
        image = self._container(SERVER_CMD)
        inst = self.make_instance(image)
        vif = self._vif(31, source='ncnosuchdev0')
        err = self.assertRaises(
            clear_exc.PortNotPluggable, self.drv.spawn, self.context, inst,
            self.glance.image_meta(image), [], None, {}, network_info=[vif])
        self.assertIn('ncnosuchdev0 does not exist', str(err))
        self.assert_gone(self.drv, inst)
        self.assertFalse(os.path.exists(os.path.join(
            self.drv.instances_path, inst.uuid)))
