"""The q35 (PCI) variant on the real libvirtd + QEMU (TCG): a container
image booted on q35 + qboot, a macvtap NIC hot-plugged into a spare PCIe
root port, seen and used by the workload, detached, the definition kept
coherent across stop and start; microvm refuses the attach."""

from xml.etree import ElementTree as ET

from nova import exception

from tests.functional import base
from tests.functional import provider_net
from tests.unit.test_network import make_vif

# The workload watches for the hot-plugged NIC (the agent configured the
# interfaces it had at boot only): configures the address it is told,
# serves a page on it, says when the NIC goes.
WATCH_CMD = (
    'mkdir -p /tmp/www && echo "page from $(hostname)" > /tmp/www/index.html'
    ' && /bin/busybox httpd -p 80 -h /tmp/www && echo watching; up=;'
    ' while :; do'
    ' if [ -e /sys/class/net/eth0 ]; then'
    '  if [ -z "$up" ]; then up=1;'
    '   /bin/busybox ip addr add %s/24 dev eth0 &&'
    '   /bin/busybox ip link set eth0 up &&'
    '   echo "hotplugged eth0 $(cat /sys/class/net/eth0/address)"; fi;'
    ' elif [ -n "$up" ]; then up=; echo "unplugged eth0"; fi;'
    ' sleep 0.2; done')


class TestPciVariant(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(provider_net.ProviderNetwork(
            prefix='10.81.0', prefix6='fd00:81::'))
        self.drv = self.make_driver()
        self.conf.config(group='clear', num_pcie_ports=2)

    def _vif(self, n):
        return make_vif(port='port-%d' % n, mac='fa:16:3e:81:00:%02x' % n,
                        source=self.net.lower, mtu=1500,
                        cidr='%s.0/24' % self.net.prefix,
                        ip=self.net.address(n), gateway=self.net.gateway,
                        dns=(self.net.gateway,), active=True)

    def _spawn(self, cmd, machine):
        image = self.container_image(cmd, hw_machine_type=machine)
        inst = self.make_instance(image)
        self.drv.spawn(self.context, inst, self.glance.image_meta(image),
                       [], None, {}, network_info=[])
        self.addCleanup(self._destroy_quietly, self.drv, inst)
        return inst

    def _guest(self, inst):
        return self.drv.host.lookup(inst.uuid)

    def test_nic_hot_plugged_used_detached_and_kept_across_restart(self):
        vif = self._vif(61)
        mac = vif['address']
        inst = self._spawn(WATCH_CMD % self.net.address(61), 'q35')
        self.wait_console(self.drv, inst, 'watching')
        root = ET.fromstring(self._guest(inst).get_xml_desc())
        self.assertTrue(root.find('os/type').get('machine').startswith(
            'pc-q35'))
        self.assertIn('qboot', root.findtext('os/loader'))
        # 2 disks + rng in their own root ports, 2 spare
        self.assertEqual(5, len(root.findall(
            "devices/controller[@model='pcie-root-port']")))

        self.drv.attach_interface(self.context, inst, None, vif)
        self.wait_console(self.drv, inst, 'hotplugged eth0 %s' % mac)
        self.assertEqual(1, len(provider_net.macvtaps_with([mac])))
        self.assertEqual('page from %s\n' % inst.hostname,
                         self.net.http_get('http://%s/' %
                                           self.net.address(61)))
        self.assertIsNotNone(self._guest(inst).interface_xml(
            mac, inactive=True))
        self.assertIn(mac, open(self.drv._files(inst).domain_xml).read())

        # the guest releases it (ACPI eject): gone live and from the definition
        self.drv.detach_interface(self.context, inst, vif)
        self.wait_console(self.drv, inst, 'unplugged eth0')
        self.assertEqual([], provider_net.macvtaps_with([mac]))
        self.assertIsNone(self._guest(inst).interface_xml(mac))
        self.assertIsNone(self._guest(inst).interface_xml(mac,
                                                          inactive=True))

        # attached again, then stop and start: Nova's network_info has
        # the port now, so the agent configures it at boot
        self.drv.attach_interface(self.context, inst, None, vif)
        self.wait_console(self.drv, inst, 'hotplugged eth0 %s' % mac, 2)
        self.drv.power_off(inst)
        self.assertEqual([], provider_net.macvtaps_with([mac]))
        self.drv.power_on(self.context, inst, [vif])
        self.wait_console(self.drv, inst, 'nova-clear: network eth0 %s mtu '
                          '1500 %s/24' % (mac, self.net.address(61)))
        self.assertEqual('page from %s\n' % inst.hostname,
                         self.net.http_get('http://%s/' %
                                           self.net.address(61)))
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)
        self.assertEqual([], provider_net.macvtaps_with([mac]))

    def test_microvm_refuses_attach_and_changes_nothing(self):
        vif = self._vif(62)
        inst = self._spawn(WATCH_CMD % self.net.address(62), 'microvm')
        self.wait_console(self.drv, inst, 'watching')
        before = self._guest(inst).get_xml_desc(inactive=True)
        err = self.assertRaises(exception.AttachInterfaceNotSupported,
                                self.drv.attach_interface, self.context,
                                inst, None, vif)
        self.assertIn('microvm variant', str(err))
        self.assertEqual(before, self._guest(inst).get_xml_desc(
            inactive=True))
        self.assertEqual([], provider_net.macvtaps_with([vif['address']]))
        self.drv.destroy(self.context, inst, [])
        self.assert_gone(self.drv, inst)
