"""Ports -> interfaces, guest network arguments, domain XML; and the
driver's plug flow (Neutron events) with a fake libvirt and virtapi."""

import contextlib
import os
import threading

import fixtures
import testtools

import libvirt
from nova.compute import power_state
from nova import exception
from nova.network import model as network_model
from os_vif import exception as osv_exception

from nova_clear import domain
from nova_clear import exception as clear_exc
from nova_clear.guest import network as guest_network
from nova_clear import vif as clear_vif
from nova_clear import vif_plug
from tests.unit import test_domain
from tests.unit import test_driver

MAC1 = 'FA:16:3E:00:00:01'
MAC2 = 'fa:16:3e:00:00:02'
NET_ID = '0e7e6c4b-0000-4000-8000-00000000000a'


def make_vif(port='port-1', mac=MAC1, vif_type='macvtap', source='phys0',
             mode='bridge', mtu=1450, cidr='10.77.0.0/24', ip='10.77.0.11',
             gateway='10.77.0.1', dns=('10.77.0.1',), routes=(),
             active=False, extra_subnets=(), bridge=None, details=None,
             **vif_kw):
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
    network = network_model.Network(id=NET_ID, bridge=bridge,
                                    label='clear', subnets=subnets, mtu=mtu)
    if details is None:
        details = {network_model.VIF_DETAILS_MACVTAP_SOURCE: source,
                   network_model.VIF_DETAILS_MACVTAP_MODE: mode,
                   network_model.VIF_DETAILS_PHYS_INTERFACE: source}
    vif_kw.setdefault('vnic_type', network_model.VNIC_TYPE_NORMAL)
    return network_model.VIF(
        id=port, address=mac, network=network, type=vif_type,
        details=details, active=active, **vif_kw)


def ovs_details(datapath_type='system', **extra):
    """vif_details as Neutron's openvswitch (and ovn) mechanism drivers
    bind a port of vnic_type normal."""
    details = {network_model.VIF_DETAILS_PORT_FILTER: True,
               network_model.VIF_DETAILS_OVS_HYBRID_PLUG: False,
               network_model.VIF_DETAILS_OVS_DATAPATH_TYPE: datapath_type,
               network_model.VIF_DETAILS_BRIDGE_NAME: 'br-int',
               'connectivity': 'l2'}
    details.update(extra)
    return details


def make_ovs_vif(port='11111111-2222-3333-4444-555555555555', mac=MAC1,
                 bridge='br-int', details=None, delegate_create=True,
                 **kw):
    """A Nova VIF of an OVS port as nova's Neutron API builds it (tap
    name from the port id, iface-id, delegate_create)."""
    return make_vif(port=port, mac=mac, vif_type='ovs', bridge=bridge,
                    details=ovs_details() if details is None else details,
                    devname=('tap' + port)[:network_model.NIC_NAME_LEN],
                    ovs_interfaceid=port, delegate_create=delegate_create,
                    **kw)


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
                                make_vif(vif_type='vhostuser'))
        self.assertIn('port-1', str(err))
        self.assertIn('vhostuser', str(err))
        self.assertIn('macvtap, ovs', str(err))

    def test_ovs_port_os_vif_creates_port(self):
        # nova's Neutron API always sets delegate_create: os-vif creates
        # the OVS port, libvirt the tap of that name
        iface = clear_vif.interface(make_ovs_vif())
        self.assertEqual(clear_vif.Interface(
            port_id='11111111-2222-3333-4444-555555555555', mac=MAC1.lower(),
            type='ethernet', mtu=1450, target_dev='tap11111111-22'), iface)

    def test_ovs_port_os_vif_creates_tap(self):
        iface = clear_vif.interface(make_ovs_vif(details=ovs_details(
            **{network_model.VIF_DETAILS_OVS_CREATE_TAP: True})))
        self.assertEqual(('ethernet', False, 'tap11111111-22'),
                         (iface.type, iface.managed, iface.target_dev))

    def test_ovs_port_libvirt_adds_it(self):
        iface = clear_vif.interface(make_ovs_vif(delegate_create=False))
        self.assertEqual(
            ('bridge', 'br-int', 'openvswitch',
             '11111111-2222-3333-4444-555555555555', 'tap11111111-22'),
            (iface.type, iface.source_bridge, iface.virtualport,
             iface.interface_id, iface.target_dev))

    def test_ovs_hybrid_plug(self):
        iface = clear_vif.interface(make_ovs_vif(details=ovs_details(
            **{network_model.VIF_DETAILS_OVS_HYBRID_PLUG: True})))
        self.assertEqual(('bridge', 'qbr11111111-22', None),
                         (iface.type, iface.source_bridge, iface.virtualport))

    def test_ovs_refusals_name_the_port(self):
        err = self.assertRaises(
            clear_vif.VifError, clear_vif.interface,
            make_ovs_vif(vnic_type=network_model.VNIC_TYPE_DIRECT))
        self.assertIn('11111111-2222-3333-4444-555555555555', str(err))
        self.assertIn('vnic_type direct', str(err))
        err = self.assertRaises(clear_vif.VifError, clear_vif.interface,
                                make_ovs_vif(bridge=None))
        self.assertIn('names no bridge', str(err))

    def test_os_vif_object(self):
        self.assertIsNone(clear_vif.os_vif_object(make_vif()))
        obj = clear_vif.os_vif_object(make_ovs_vif(
            details=ovs_details('netdev')))
        self.assertEqual('ovs', obj.plugin)
        self.assertEqual('netdev', obj.port_profile.datapath_type)
        self.assertTrue(obj.port_profile.create_port)

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

    @staticmethod
    def vlan_vif(vlan='101', parent='phys0', port='port-1', mac=MAC1):
        return make_vif(port=port, mac=mac, details={
            network_model.VIF_DETAILS_MACVTAP_SOURCE: '%s.%s' % (parent,
                                                                 vlan),
            network_model.VIF_DETAILS_MACVTAP_MODE: 'bridge',
            network_model.VIF_DETAILS_PHYS_INTERFACE: parent,
            network_model.VIF_DETAILS_VLAN: vlan})

    def test_macvtap_on_a_vlan_network(self):
        iface = clear_vif.interface(self.vlan_vif())
        self.assertEqual(('phys0.101', 101, 'phys0'),
                         (iface.source_dev, iface.vlan, iface.vlan_parent))
        flat = clear_vif.interface(make_vif())
        self.assertEqual((None, None), (flat.vlan, flat.vlan_parent))
        for bad in ('0', '4095', 'x'):
            err = self.assertRaises(clear_vif.VifError, clear_vif.interface,
                                    self.vlan_vif(vlan=bad))
            self.assertIn('port-1', str(err))
        self.assertRaises(clear_vif.VifError, clear_vif.interface,
                          self.vlan_vif(parent=''))

    def test_check_host_vlan_needs_its_parent_only(self):
        sysfs = self.useFixture(fixtures.TempDir()).path
        ifaces = clear_vif.interfaces([self.vlan_vif()])
        err = self.assertRaises(clear_vif.VifError, clear_vif.check_host,
                                ifaces, sysfs)
        self.assertIn('phys0 does not exist', str(err))
        os.mkdir(os.path.join(sysfs, 'phys0'))
        clear_vif.check_host(ifaces, sysfs)  # phys0.101 made at plug

    def test_vlan_devices_made_before_the_guest_once(self):
        made = set()
        calls = []
        linux_net = 'nova.privsep.linux_net.'
        self.useFixture(fixtures.MockPatch(
            linux_net + 'device_exists', side_effect=lambda d: d in made))

        def add_vlan(parent, dev, vlan):
            calls.append((parent, dev, vlan))
            made.add(dev)
        self.useFixture(fixtures.MockPatch(linux_net + 'add_vlan',
                                           side_effect=add_vlan))
        up = self.useFixture(fixtures.MockPatch(
            linux_net + 'set_device_enabled')).mock
        instance = test_domain._instance()
        info = [self.vlan_vif(), self.vlan_vif(port='p2', mac=MAC2),
                make_vif(port='p3', mac='fa:16:3e:00:00:03')]
        vif_plug.plug(instance, info, only='before')
        vif_plug.plug(instance, info, only='after')  # nothing more
        self.assertEqual([('phys0', 'phys0.101', 101)], calls)
        self.assertEqual(2, up.call_count)

    def test_vlan_device_failure_names_the_port(self):
        self.useFixture(fixtures.MockPatch(
            'nova.privsep.linux_net.device_exists', return_value=False))
        self.useFixture(fixtures.MockPatch(
            'nova.privsep.linux_net.add_vlan',
            side_effect=OSError('RTNETLINK answers: Operation not '
                                'permitted')))
        err = self.assertRaises(
            clear_exc.PortNotPluggable, vif_plug.plug,
            test_domain._instance(), [self.vlan_vif()])
        self.assertIn('port-1', str(err))
        self.assertIn('phys0.101', str(err))
        self.assertIn('not permitted', str(err))


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

    def _ovs_xml(self, **kw):
        root = test_domain._xml(
            interfaces=clear_vif.interfaces([make_ovs_vif(**kw)]))
        return root.find('devices/interface')

    def test_ovs_ethernet_interface(self):
        iface = self._ovs_xml()
        self.assertEqual('ethernet', iface.get('type'))
        self.assertEqual(MAC1.lower(), iface.find('mac').get('address'))
        self.assertEqual({'dev': 'tap11111111-22'},
                         iface.find('target').attrib)
        self.assertIsNone(iface.find('source'))
        self.assertIsNone(iface.find('virtualport'))
        self.assertEqual('virtio', iface.find('model').get('type'))
        self.assertEqual('1450', iface.find('mtu').get('size'))
        self.assertEqual('virtio-mmio', iface.find('address').get('type'))

    def test_ovs_tap_made_by_os_vif_is_not_managed(self):
        iface = self._ovs_xml(details=ovs_details(
            **{network_model.VIF_DETAILS_OVS_CREATE_TAP: True}))
        self.assertEqual('ethernet', iface.get('type'))
        self.assertEqual({'dev': 'tap11111111-22', 'managed': 'no'},
                         iface.find('target').attrib)

    def test_ovs_bridge_with_virtualport(self):
        iface = self._ovs_xml(delegate_create=False, mtu=None)
        self.assertEqual('bridge', iface.get('type'))
        self.assertEqual({'bridge': 'br-int'}, iface.find('source').attrib)
        self.assertEqual('openvswitch',
                         iface.find('virtualport').get('type'))
        self.assertEqual(
            {'interfaceid': '11111111-2222-3333-4444-555555555555'},
            iface.find('virtualport/parameters').attrib)
        self.assertEqual('tap11111111-22',
                         iface.find('target').get('dev'))
        self.assertIsNone(iface.find('mtu'))

    def test_ovs_hybrid_bridge(self):
        iface = self._ovs_xml(details=ovs_details(
            **{network_model.VIF_DETAILS_OVS_HYBRID_PLUG: True}))
        self.assertEqual('bridge', iface.get('type'))
        self.assertEqual({'bridge': 'qbr11111111-22'},
                         iface.find('source').attrib)
        self.assertIsNone(iface.find('virtualport'))


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
        self.conn.on_start = lambda dom, paused: states.append(
            dom.state()[0])
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
                                network_info=[make_vif(vif_type='vhostuser')])
        self.assertIn('VIF type vhostuser', str(err))
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


class TestDriverOsVif(test_driver.DriverTestCase):
    """The driver's os-vif calls (os_vif itself faked: the functional test
    plugs into a real Open vSwitch)."""

    PORT = '11111111-2222-3333-4444-555555555555'

    def setUp(self):
        super().setUp()
        self.virtapi = FakeEventVirtAPI()
        self.drv.virtapi = self.virtapi
        self.conf.config(vif_plugging_timeout=42)
        self.calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_clear.vif_plug._initialized', False))
        self.init = self.useFixture(fixtures.MockPatch(
            'os_vif.initialize')).mock
        self.plug = self.useFixture(fixtures.MockPatch(
            'os_vif.plug', side_effect=lambda vif, info: self.calls.append(
                ('plug', vif.id, info.uuid)))).mock
        self.unplug = self.useFixture(fixtures.MockPatch(
            'os_vif.unplug', side_effect=lambda vif, info: self.calls.append(
                ('unplug', vif.id, info.uuid)))).mock
        self.conn.on_start = lambda dom, paused: self.calls.append(
            ('start', paused))

    def test_spawn_plugs_once_the_tap_exists_inside_the_wait(self):
        # libvirt makes the tap of a create_port port: the domain starts
        # paused (tap made and up), then os-vif adds the port
        inst = self.instance()
        vif = make_ovs_vif(active=False)
        self.spawn(inst, network_info=[vif])
        self.assertEqual([('start', True), ('plug', self.PORT, inst.uuid)],
                         self.calls)
        self.assertEqual([([('network-vif-plugged', self.PORT)], 42)],
                         self.virtapi.waited)
        obj = self.plug.call_args[0][0]
        self.assertEqual('VIFOpenVSwitch', obj.obj_name())
        self.assertTrue(obj.port_profile.create_port)
        self.assertEqual('tap11111111-22', obj.vif_name)
        self.init.assert_called_once_with()
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            xml = f.read()
        self.assertIn('<interface type="ethernet">', xml)
        self.assertIn('<target dev="tap11111111-22" />', xml)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def test_port_up_plugs_without_waiting(self):
        inst = self.instance()
        self.spawn(inst, network_info=[make_ovs_vif(active=True)])
        self.assertEqual([('start', True), ('plug', self.PORT, inst.uuid)],
                         self.calls)
        self.assertEqual([], self.virtapi.waited)
        # resumed once plugged
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def test_macvtap_needs_no_os_vif(self):
        self.useFixture(fixtures.MockPatch('nova_clear.vif.check_host'))
        inst = self.instance()
        self.spawn(inst, network_info=[make_vif(active=True)])
        self.drv.destroy(self.ctx, inst, [make_vif(active=True)])
        self.assertEqual([('start', False)], self.calls)
        self.init.assert_not_called()

    def test_plug_failure_names_port_and_leaves_nothing(self):
        def fail(vif, info):
            raise osv_exception.PlugException(
                vif=vif, err=RuntimeError('Could not connect to ovsdb'))
        self.plug.side_effect = fail
        inst = self.instance()
        err = self.assertRaises(clear_exc.PortNotPluggable, self.spawn, inst,
                                network_info=[make_ovs_vif()])
        self.assertIn('os-vif could not plug port %s (ovs on br-int): '
                      'Could not connect to ovsdb' % self.PORT, str(err))
        self.assertEqual([('start', True), ('unplug', self.PORT, inst.uuid)],
                         self.calls)
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_start_failure_unplugs(self):
        self.conn.fail_start = 'boom'
        inst = self.instance()
        self.assertRaises(clear_exc.ClearContainerStartFailed, self.spawn,
                          inst, network_info=[make_ovs_vif(active=True)])
        self.assertEqual(['unplug'], [c[0] for c in self.calls])
        self.assertEqual({}, self.conn.domains)

    def test_destroy_removes_domain_then_unplugs(self):
        inst = self.instance()
        info = [make_ovs_vif(active=True),
                make_ovs_vif('66666666-7777-8888-9999-000000000000', MAC2,
                             active=True)]
        self.spawn(inst, network_info=info)
        self.calls.clear()
        orig = self.drv._remove_domain

        def remove(instance, guest=None):
            self.calls.append(('remove',))
            orig(instance, guest)
        self.drv._remove_domain = remove
        self.drv.destroy(self.ctx, inst, info)
        self.assertEqual(
            [('remove',), ('unplug', self.PORT, inst.uuid),
             ('unplug', '66666666-7777-8888-9999-000000000000', inst.uuid)],
            self.calls)
        self.assertEqual({}, self.conn.domains)

    def test_unplug_failure_is_logged_not_raised(self):
        inst = self.instance()
        self.spawn(inst, network_info=[make_ovs_vif(active=True)])
        logs = self.useFixture(fixtures.FakeLogger())

        def fail(vif, info):
            raise osv_exception.UnplugException(
                vif=vif, err=RuntimeError('ovsdb gone'))
        self.unplug.side_effect = fail
        self.drv.destroy(self.ctx, inst, [make_ovs_vif(active=True)])
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
        self.assertIn('os-vif could not unplug port %s: ovsdb gone'
                      % self.PORT, logs.output)

    def test_restarts_replug_and_plug_vifs_plugs(self):
        inst = self.instance()
        vif = make_ovs_vif(active=True)
        self.spawn(inst, network_info=[vif])
        # as nova's libvirt driver: a hard reboot (and power on) unplugs
        # and plugs again, without waiting for Neutron
        self.drv.reboot(self.ctx, inst, [vif], 'HARD')
        self.assertEqual(['start', 'plug', 'unplug', 'start', 'plug'],
                         [c[0] for c in self.calls])
        self.calls.clear()
        self.drv.power_off(inst)
        self.drv.power_on(self.ctx, inst, [vif])
        self.assertEqual(['unplug', 'start', 'plug'],
                         [c[0] for c in self.calls])
        self.calls.clear()
        self.drv.suspend(self.ctx, inst)
        self.drv.resume(self.ctx, inst, [vif])
        self.assertEqual(['unplug', 'start', 'plug'],
                         [c[0] for c in self.calls])
        self.calls.clear()
        self.drv.plug_vifs(inst, [vif])
        self.assertEqual(['plug'], [c[0] for c in self.calls])
        self.assertEqual([], self.virtapi.waited)

    def test_initialize_once_from_many_threads(self):
        threads = [threading.Thread(target=vif_plug.initialize)
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.init.assert_called_once_with()
