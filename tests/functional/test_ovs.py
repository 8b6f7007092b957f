"""OVS ports plugged for real: os-vif's ovs plugin against the tests' own
ovsdb-server and ovs-vswitchd (userspace datapath: no openvswitch kernel
module here), taps created by libvirt (or by os-vif), virtio-net in the
Clear Container; traffic between the guests and a namespace on the same
bridge.  No Neutron agent: the ports are passed up (active) or the fake
virtapi delivers the events."""

import os
import sys
import time
import uuid

import os_vif
from vif_plug_ovs import ovs as vif_plug_ovs

from nova.network import model as network_model

from nova_clear import exception as clear_exc
from nova_clear import vif_plug
from tests.functional import base
from tests.functional import provider_net
from tests.functional import services
from tests.functional import test_network
from tests.unit.test_network import make_ovs_vif
from tests.unit.test_network import ovs_details

CONF = base.CONF
MTU = 1450     # as on a VXLAN/Geneve tenant network
SERVER_CMD = test_network.SERVER_CMD
CLIENT_CMD = test_network.CLIENT_CMD


class TestOvs(base.FunctionalTestCase):

    _container = test_network.TestNetwork._container

    def _spawn(self, image_id, network_info):
        inst = self.make_instance(image_id)
        self.drv.spawn(self.context, inst, self.glance.image_meta(image_id),
                       [], None, {}, network_info=network_info)
        # with the ports: a failed test must not leave os-vif's taps
        self.addCleanup(self._destroy_quietly_with, inst, network_info)
        return inst

    def _destroy_quietly_with(self, inst, network_info):
        try:
            self.drv.destroy(self.context, inst, network_info)
        except Exception:
            pass

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(provider_net.OvsNetwork())
        self.configure_os_vif('unix:' + services.OVS_DB_SOCK)
        self.drv = self.make_driver()

    def configure_os_vif(self, connection):
        """What nova-compute.conf says for os-vif on such a host, then a
        fresh os-vif (its ovs plugin reads the connection when loaded)."""
        CONF.register_opts(vif_plug_ovs.OvsPlugin.CONFIG_OPTS,
                           group='os_vif_ovs')
        self.conf.config(group='os_vif_ovs', ovsdb_connection=connection,
                         ovs_vsctl_timeout=10)
        # No sudo: os-vif's privsep daemon starts from this venv as root.
        helper = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')
        self.conf.config(group='vif_plug_ovs_privileged',
                         helper_command=helper)
        os_vif.initialize(reset=True)
        vif_plug._initialized = True

    def _vif(self, n, **kw):
        port = str(uuid.uuid4())
        values = dict(port=port, mac='fa:16:3e:80:00:%02x' % n,
                      bridge=self.net.bridge,
                      details=ovs_details('netdev',
                                          bridge_name=self.net.bridge),
                      mtu=MTU, cidr='%s.0/24' % self.net.prefix,
                      ip=self.net.address(n), gateway=self.net.gateway,
                      dns=(self.net.gateway,), active=True)
        values.update(kw)
        return make_ovs_vif(**values)

    @staticmethod
    def _tap(vif):
        return vif['devname']

    def _assert_plugged(self, inst, vif):
        tap = self._tap(vif)
        self.assertIn(tap, self.net.ports())
        # what the Neutron OVS agent / ovn-controller bind the port by
        for key, want in (('iface-id', vif['id']),
                          ('attached-mac', vif['address']),
                          ('vm-uuid', inst.uuid)):
            self.assertEqual(want, services.vsctl(
                'get', 'Interface', tap,
                'external_ids:%s' % key).strip().strip('"'))
        with open('/sys/class/net/%s/mtu' % tap) as f:
            self.assertEqual(str(MTU), f.read().strip())
        # ovs-vswitchd opened the tap (an ofport, no error)
        self.assertNotEqual(
            '-1', services.vsctl('get', 'Interface', tap, 'ofport').strip())

    def _assert_unplugged(self, *vifs):
        self.assertEqual([], self.net.ports())
        for vif in vifs:
            self.assertFalse(provider_net.net_device_exists(self._tap(vif)),
                             self._tap(vif))

    def test_ovs_ports_reachable_and_guests_reach_each_other(self):
        server_vif = self._vif(11, active=False)    # waits for the event
        t0 = time.monotonic()
        server = self._spawn(self._container(SERVER_CMD), [server_vif])
        spawned = time.monotonic() - t0
        text = self.wait_console(self.drv, server, 'serving')
        self.assertIn('nova-clear: network eth0 %s mtu %d %s/24' % (
            server_vif['address'], MTU, self.net.address(11)), text)
        self.assertIn('default via %s dev eth0' % self.net.gateway, text)
        self._assert_plugged(server, server_vif)
        page = self.net.http_get('http://%s/' % self.net.address(11))
        reached = time.monotonic() - t0
        self.assertEqual('page from %s\n' % server.hostname, page)

        client_vif = self._vif(12)
        client = self._spawn(
            self._container(CLIENT_CMD % self.net.address(11)), [client_vif])
        text = self.wait_console(self.drv, client, 'client-done')
        self.assertIn('page from %s' % server.hostname, text)
        # (the client's workload ended: its guest, and libvirt's tap, may
        # be gone already; os-vif's OVS port stays until unplugged)
        self.assertEqual(
            sorted([self._tap(server_vif), self._tap(client_vif)]),
            sorted(self.net.ports()))

        t1 = time.monotonic()
        for inst, vif in ((server, server_vif), (client, client_vif)):
            self.drv.destroy(self.context, inst, [vif])
            self.assert_gone(self.drv, inst)
        print('ovs: spawn %.2fs, http answered %.2fs after spawn start, '
              'destroy x2 %.2fs' % (spawned, reached, time.monotonic() - t1))
        self._assert_unplugged(server_vif, client_vif)

    def test_power_cycle_and_reboot_keep_the_port(self):
        vif = self._vif(21)
        inst = self._spawn(self._container(SERVER_CMD), [vif])
        self.wait_console(self.drv, inst, 'serving')
        self.net.http_get('http://%s/' % self.net.address(21))
        self.drv.power_off(inst)
        # libvirt deleted its tap; os-vif's OVS port stays while stopped
        self.assertFalse(provider_net.net_device_exists(self._tap(vif)))
        self.assertEqual([self._tap(vif)], self.net.ports())
        self.drv.power_on(self.context, inst, [vif])
        self.wait_console(self.drv, inst, 'serving', count=2)
        self._assert_plugged(inst, vif)
        self.net.http_get('http://%s/' % self.net.address(21))
        self.drv.reboot(self.context, inst, [vif], 'HARD')
        self.wait_console(self.drv, inst, 'serving', count=3)
        self.net.http_get('http://%s/' % self.net.address(21))
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)
        self._assert_unplugged(vif)

    def test_tap_created_by_os_vif(self):
        # Neutron's ovs_create_tap: os-vif creates the tap, libvirt opens
        # it (managed='no') and leaves it; unplug deletes it.
        vif = self._vif(31, details=ovs_details(
            'netdev', bridge_name=self.net.bridge,
            **{network_model.VIF_DETAILS_OVS_CREATE_TAP: True}))
        inst = self._spawn(self._container(SERVER_CMD), [vif])
        self.wait_console(self.drv, inst, 'serving')
        self._assert_plugged(inst, vif)
        self.net.http_get('http://%s/' % self.net.address(31))
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)
        self._assert_unplugged(vif)

    def test_hybrid_plug(self):
        # ovs_hybrid_plug (ML2/OVS with the iptables firewall): os-vif
        # makes a Linux bridge qbrXXX and a veth pair qvbXXX-qvoXXX into
        # OVS; libvirt adds its tap to the Linux bridge.
        vif = self._vif(51, details=ovs_details(
            'netdev', bridge_name=self.net.bridge,
            **{network_model.VIF_DETAILS_OVS_HYBRID_PLUG: True}))
        qbr, qvo = ('qbr' + vif['id'])[:14], ('qvo' + vif['id'])[:14]
        inst = self._spawn(self._container(SERVER_CMD), [vif])
        self.wait_console(self.drv, inst, 'serving')
        self.assertEqual([qvo], self.net.ports())
        self.assertTrue(provider_net.net_device_exists(
            '%s/brif/%s' % (qbr, self._tap(vif))))
        self.net.http_get('http://%s/' % self.net.address(51))
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)
        self._assert_unplugged(vif)
        for dev in (qbr, qvo, ('qvb' + vif['id'])[:14]):
            self.assertFalse(provider_net.net_device_exists(dev), dev)

    def test_unreachable_ovsdb_is_a_clear_fault_and_leaves_nothing(self):
        missing = os.path.join(services.OVS_DIR, 'no-such-db.sock')
        # (the next test's setUp loads os-vif again with its own config)
        self.configure_os_vif('unix:' + missing)
        image = self._container(SERVER_CMD)
        inst = self.make_instance(image)
        vif = self._vif(41)
        err = self.assertRaises(
            clear_exc.PortNotPluggable, self.drv.spawn, self.context, inst,
            self.glance.image_meta(image), [], None, {}, network_info=[vif])
        self.assertIn('os-vif could not plug port %s (ovs on %s)'
                      % (vif['id'], self.net.bridge), str(err))
        self.assertIn(missing, str(err))
        self.assert_gone(self.drv, inst)
        self._assert_unplugged(vif)
