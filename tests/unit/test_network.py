"""Ports -> interfaces, guest network arguments, domain XML; and the
driver's plug flow (Neutron events) with a fake libvirt and virtapi."""

import contextlib
import os

import fixtures
import testtools

import libvirt
from nova.compute import power_state
from nova import exception
from nova.network import model as network_model

from nova_clear import domain
from nova_clear import exception as clear_exc
from nova_clear.guest import network as guest_network
from nova_clear import vif as clear_vif
from tests.unit import test_domain
from tests.unit import test_driver

MAC1 = 'FA:16:3E:00:00:01'
MAC2 = 'fa:16:3e:00:00:02'


def make_vif(port='port-1', mac=MAC1, vif_type='macvtap', source='phys0',
             mode='bridge', mtu=1450, cidr='10.77.0.0/24', ip='10.77.0.11',
             gateway='10.77.0.1', dns=('10.77.0.1',), routes=(),
             active=False, extra_subnets=()):
    subnets = []
    if cidr:
        subnets.append(network_model.Subnet(
            cidr=cidr,
            ips=[network_model.FixedIP(address=ip)] if ip else [],
            gateway=(network_model.IP(address=gateway, type='gateway')
                     if gateway else None),
            dns=[network_model.IP(address=a, type='dns') for a in dns],
            routes=[network_model.Route(
                cidr=c, gateway=network_model.IP(address=g))
                for c, g in routes]))
    subnets.extend(extra_subnets)
    network = network_model.Network(id='net-1', bridge=None, label='clear',
                                    subnets=subnets, mtu=mtu)
    return network_model.VIF(
        id=port, address=mac, network=network, type=vif_type,
        details={network_model.VIF_DETAILS_MACVTAP_SOURCE: source,
                 network_model.VIF_DETAILS_MACVTAP_MODE: mode,
                 network_model.VIF_DETAILS_PHYS_INTERFACE: source},
        vnic_type=network_model.VNIC_TYPE_NORMAL, active=active)


class TestInterfaces(testtools.TestCase):

    def test_macvtap_port(self):
        iface = clear_vif.interface(make_vif())
        self.assertEqual(clear_vif.Interface(
            port_id='port-1', mac=MAC1.lower(), type='direct',
            source_dev='phys0', source_mode='bridge', mtu=1450), iface)

    def test_no_mtu(self):
        self.assertIsNone(clear_vif.interface(make_vif(mtu=None)).mtu)

    def test_unsupported_type_names_port_and_type(self):
        err = self.assertRaises(clear_vif.VifError, clear_vif.interface,
                                make_vif(vif_type='ovs'))
        self.assertIn('port-1', str(err))
        self.assertIn('ovs', str(err))
        self.assertIn('macvtap', str(err))

    def test_binding_failed(self):
        for t in ('binding_failed', 'unbound'):
            err = self.assertRaises(clear_vif.VifError, clear_vif.interface,
                                    make_vif(vif_type=t))
            self.assertIn('not bound to this host', str(err))

    def test_missing_details(self):
        err = self.assertRaises(clear_vif.VifError, clear_vif.interface,
                                make_vif(source=None))
        self.assertIn('no source device', str(err))
        self.assertRaises(clear_vif.VifError, clear_vif.interface,
                          make_vif(mode='weird'))
        self.assertRaises(clear_vif.VifError, clear_vif.interface,
                          make_vif(mac=None))

    def test_plug_events_only_for_ports_down(self):
        info = [make_vif('a', active=False), make_vif('b', MAC2, active=True)]
        self.assertEqual([('network-vif-plugged', 'a')],
                         clear_vif.plug_events(info))
        self.assertEqual([], clear_vif.plug_events(None))

    def test_check_host(self):
        sysfs = self.useFixture(fixtures.TempDir()).path
        os.mkdir(os.path.join(sysfs, 'phys0'))
        ifaces = clear_vif.interfaces([make_vif()])
        clear_vif.check_host(ifaces, sysfs)
        os.rmdir(os.path.join(sysfs, 'phys0'))
        err = self.assertRaises(clear_vif.VifError, clear_vif.check_host,
                                ifaces, sysfs)
        self.assertIn('phys0 does not exist', str(err))


class TestGuestNetworkArgs(testtools.TestCase):

    def test_one_port(self):
        self.assertEqual(
            ['nova_clear.if=fa:16:3e:00:00:01,1450',
             'nova_clear.ip=fa:16:3e:00:00:01,10.77.0.11/24',
             'nova_clear.rt=fa:16:3e:00:00:01,0.0.0.0/0,10.77.0.1',
             'nova_clear.dns=10.77.0.1'],
            guest_network.cmdline_args([make_vif()]))

    def test_routes_ipv6_dns_dedup_and_limit(self):
        v6 = network_model.Subnet(
            cidr='fd00::/64', ips=[network_model.FixedIP(address='fd00::5')],
            gateway=network_model.IP(address='fd00::1'),
            dns=[network_model.IP(address='fd00::53')])
        args = guest_network.cmdline_args([
            make_vif(routes=[('192.168.0.0/16', '10.77.0.254')],
                     dns=('10.77.0.1', '10.77.0.2', '10.77.0.3'),
                     extra_subnets=[v6]),
            make_vif('port-2', MAC2, mtu=None, gateway=None, ip='10.78.0.5',
                     cidr='10.78.0.0/23', dns=('10.77.0.1',))])
        self.assertEqual([
            'nova_clear.if=fa:16:3e:00:00:01,1450',
            'nova_clear.ip=fa:16:3e:00:00:01,10.77.0.11/24',
            'nova_clear.rt=fa:16:3e:00:00:01,0.0.0.0/0,10.77.0.1',
            'nova_clear.rt=fa:16:3e:00:00:01,192.168.0.0/16,10.77.0.254',
            'nova_clear.ip=fa:16:3e:00:00:01,fd00::5/64',
            'nova_clear.rt=fa:16:3e:00:00:01,::/0,fd00::1',
            'nova_clear.if=fa:16:3e:00:00:02,',
            'nova_clear.ip=fa:16:3e:00:00:02,10.78.0.5/23',
            'nova_clear.dns=10.77.0.1', 'nova_clear.dns=10.77.0.2',
            'nova_clear.dns=10.77.0.3'], args)

    def test_subnet_without_address_is_skipped(self):
        self.assertEqual(['nova_clear.if=fa:16:3e:00:00:01,1450'],
                         guest_network.cmdline_args([make_vif(ip=None)]))

    def test_length_check(self):
        guest_network.check_length('x' * 2047)
        err = self.assertRaises(guest_network.CommandLineTooLong,
                                guest_network.check_length, 'x' * 2048)
        self.assertIn('2048 bytes', str(err))


class TestInterfaceXml(testtools.TestCase):

    def test_direct_interface_on_microvm(self):
        root = test_domain._xml(
            interfaces=clear_vif.interfaces([make_vif()]),
            network_args=tuple(guest_network.cmdline_args([make_vif()])))
        iface = root.find('devices/interface')
        self.assertEqual('direct', iface.get('type'))
        self.assertEqual(MAC1.lower(), iface.find('mac').get('address'))
        self.assertEqual({'dev': 'phys0', 'mode': 'bridge'},
                         iface.find('source').attrib)
        self.assertEqual('virtio', iface.find('model').get('type'))
        # libvirt 9 refuses <mtu> on direct; the guest sets the MTU
        self.assertIsNone(iface.find('mtu'))
        self.assertEqual('virtio-mmio', iface.find('address').get('type'))
        cmdline = root.findtext('os/cmdline')
        self.assertIn('nova_clear.ip=fa:16:3e:00:00:01,10.77.0.11/24',
                      cmdline)

    def test_network_args_before_the_workload(self):
        boot = test_domain._boot(network_args=('nova_clear.dns=1.1.1.1',))
        cmdline = domain.kernel_cmdline(
            test_domain._instance(),
            test_domain._image({'os_command_line': 'init=/bin/app -- x'}),
            boot)
        self.assertLess(cmdline.index('nova_clear.dns'),
                        cmdline.index('init=/bin/app'))

    def test_no_interfaces_no_element(self):
        root = test_domain._xml()
        self.assertIsNone(root.find('devices/interface'))


class FakeEventVirtAPI:
    """wait_for_instance_event as nova's ComputeVirtAPI behaves: plans the
    events, runs the block, then waits (here: an outcome set by the
    test)."""

    def __init__(self):
        self.waited = []
        self.outcome = 'completed'
        self.state_during_block = None

    @contextlib.contextmanager
    def wait_for_instance_event(self, instance, event_names, timeout=300,
                                error_callback=None):
        self.waited.append((list(event_names), timeout))
        yield
        if self.outcome == 'timeout':
            raise exception.InstanceEventTimeout()
        if self.outcome == 'failed':
            error_callback('network-vif-plugged-%s' % event_names[0][1],
                           instance)


class TestDriverPlugging(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.virtapi = FakeEventVirtAPI()
        self.drv.virtapi = self.virtapi
        # the macvtap source device "exists"
        self.useFixture(fixtures.MockPatch(
            'nova_clear.vif.check_host'))
        self.conf.config(vif_plugging_timeout=42)

    def test_spawn_waits_for_ports_down_then_runs(self):
        inst = self.instance()
        states = []
        orig = self.drv._start

        def start(instance, dom, files, paused=False):
            orig(instance, dom, files, paused=paused)
            states.append(dom.state()[0])
        self.drv._start = start
        info = [make_vif(active=False), make_vif('port-2', MAC2,
                                                 active=True)]
        self.spawn(inst, network_info=info)
        self.assertEqual([([('network-vif-plugged', 'port-1')], 42)],
                         self.virtapi.waited)
        # started paused...
        self.assertEqual([libvirt.VIR_DOMAIN_PAUSED], states)
        self.assertEqual(power_state.RUNNING,      # ...and resumed
                         self.drv.get_info(inst).state)
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            xml = f.read()
        self.assertEqual(2, xml.count("<interface type=\"direct\">"))
        self.assertIn('nova_clear.if=fa:16:3e:00:00:02,1450', xml)

    def test_no_wait_when_ports_up_or_timeout_zero(self):
        self.spawn(self.instance(1), network_info=[make_vif(active=True)])
        self.conf.config(vif_plugging_timeout=0)
        self.spawn(self.instance(2), network_info=[make_vif(active=False)])
        self.assertEqual([], self.virtapi.waited)

    def test_timeout_is_a_clear_fault_and_leaves_nothing(self):
        self.virtapi.outcome = 'timeout'
        inst = self.instance()
        err = self.assertRaises(clear_exc.VifPlugTimeout, self.spawn, inst,
                                network_info=[make_vif()])
        self.assertIn('port-1', str(err))
        self.assertIn('42s', str(err))
        self.assertIn('fakehost', str(err))
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_timeout_not_fatal_starts_anyway(self):
        self.conf.config(vif_plugging_is_fatal=False)
        self.virtapi.outcome = 'timeout'
        inst = self.instance()
        self.spawn(inst, network_info=[make_vif()])
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def test_neutron_failure_event(self):
        self.virtapi.outcome = 'failed'
        inst = self.instance()
        err = self.assertRaises(clear_exc.VifPlugFailed, self.spawn, inst,
                                network_info=[make_vif()])
        self.assertIn('port-1', str(err))
        self.assertEqual({}, self.conn.domains)

    def test_unpluggable_port_refused_before_anything(self):
        inst = self.instance()
        err = self.assertRaises(clear_exc.PortNotPluggable, self.spawn, inst,
                                network_info=[make_vif(vif_type='ovs')])
        self.assertIn('VIF type ovs', str(err))
        self.assertEqual([], self.virtapi.waited)
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_command_line_too_long(self):
        info = [make_vif('p%d' % i, 'fa:16:3e:00:01:%02x' % i,
                         routes=[('10.%d.0.0/16' % j, '10.77.0.254')
                                 for j in range(10)])
                for i in range(8)]
        inst = self.instance()
        err = self.assertRaises(clear_exc.PortNotPluggable, self.spawn, inst,
                                network_info=info)
        self.assertIn('command line', str(err))
        self.assertEqual({}, self.conn.domains)

    def test_hard_reboot_keeps_interfaces_without_waiting(self):
        inst = self.instance()
        self.spawn(inst, network_info=[make_vif(active=True)])
        self.drv.reboot(self.ctx, inst, [make_vif(active=True)], 'HARD')
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            self.assertIn('<interface type="direct">', f.read())
        self.assertEqual([], self.virtapi.waited)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def test_plug_vifs_checks_ports(self):
        self.drv.plug_vifs(self.instance(), [make_vif()])
        self.assertRaises(clear_exc.PortNotPluggable, self.drv.plug_vifs,
                          self.instance(), [make_vif(vif_type='bridge')])
