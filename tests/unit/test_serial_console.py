"""The interactive serial console: the XML, the ports, the driver's
get_serial_console (no daemons; fake libvirt)."""

import socket
import threading
from xml.etree import ElementTree as ET

import fixtures
from oslo_config import fixture as config_fixture
import testtools

import nova.conf
from nova.console import type as ctype
from nova import exception

from nova_clear import domain
from nova_clear import serial_console
from tests.unit import test_domain
from tests.unit import test_driver

CONF = nova.conf.CONF


def _serial(**kw):
    return test_domain._xml(**kw).findall('devices/serial')


class TestSerialXML(testtools.TestCase):

    def test_log_only_by_default(self):
        [serial] = _serial()
        self.assertEqual('file', serial.get('type'))
        self.assertEqual({'path': '/i/console.log', 'append': 'on'},
                         serial.find('source').attrib)
        self.assertIsNone(serial.find('log'))
        self.assertEqual('0', serial.find('target').get('port'))

    def test_tcp_server_that_also_logs(self):
        [serial] = _serial(serial_tcp=('127.0.0.1', 10007))
        self.assertEqual('tcp', serial.get('type'))
        self.assertEqual({'mode': 'bind', 'host': '127.0.0.1',
                          'service': '10007'},
                         serial.find('source').attrib)
        self.assertEqual('raw', serial.find('protocol').get('type'))
        # console log show keeps reading the same file, kept across
        # restarts
        self.assertEqual({'file': '/i/console.log', 'append': 'on'},
                         serial.find('log').attrib)
        self.assertEqual('0', serial.find('target').get('port'))
        # still the guest's console
        self.assertIn('console=ttyS0', test_domain._xml(
            serial_tcp=('127.0.0.1', 10007)).findtext('os/cmdline'))

    def test_q35_too(self):
        [serial] = _serial(machine_type='q35',
                           serial_tcp=('192.0.2.5', 10001))
        self.assertEqual('192.0.2.5', serial.find('source').get('host'))

    def test_ports_read_back(self):
        xml = domain.domain_xml(
            test_domain._instance(), test_domain._flavor(),
            test_domain._image(),
            test_domain._boot(serial_tcp=('127.0.0.1', 10007)))
        self.assertEqual([('127.0.0.1', 10007)],
                         serial_console.tcp_ports_of(xml))
        plain = domain.domain_xml(
            test_domain._instance(), test_domain._flavor(),
            test_domain._image(), test_domain._boot())
        self.assertEqual([], serial_console.tcp_ports_of(plain))

    def test_ports_of_odd_xml(self):
        f = serial_console.tcp_ports_of
        self.assertEqual([], f('not xml'))
        self.assertEqual([], f(
            "<domain><devices><serial type='tcp'><source mode='connect' "
            "host='h' service='1'/></serial></devices></domain>"))
        self.assertEqual([], f(
            "<domain><devices><serial type='tcp'><source mode='bind' "
            "host='h' service='x'/></serial></devices></domain>"))
        self.assertEqual([('h', 5)], f(
            "<domain><devices><serial type='pty'/><serial type='tcp'>"
            "<source mode='bind' host='h' service='5'/></serial>"
            "</devices></domain>"))


class ConfTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.conf.config(group='serial_console', enabled=True,
                         port_range='10000:10004',
                         proxyclient_address='127.0.0.1')


class TestPortRange(ConfTestCase):

    def test_range(self):
        self.assertEqual((10000, 10004), serial_console.port_range())
        self.assertEqual((1, 2), serial_console.port_range('1:2'))

    def test_bad_ranges_fall_back_to_novas_default(self):
        for text in ('10', '5:5', '6:5', 'a:b', '0:10', '1:70000', ''):
            self.assertEqual((10000, 20000),
                             serial_console.port_range(text), text)


class TestSerialPorts(ConfTestCase):

    def setUp(self):
        super().setUp()
        self.busy = set()
        self.ports = serial_console.SerialPorts(
            free=lambda h, p: (h, p) not in self.busy)

    def test_disabled_claims_nothing(self):
        self.conf.config(group='serial_console', enabled=False)
        self.assertIsNone(self.ports.claim('a'))
        self.assertEqual([], self.ports.held('a'))

    def test_each_instance_its_own_port(self):
        self.assertEqual(('127.0.0.1', 10000), self.ports.claim('a'))
        self.assertEqual(('127.0.0.1', 10001), self.ports.claim('b'))

    def test_a_redefinition_keeps_the_port_when_free(self):
        self.assertEqual(10000, self.ports.claim('a')[1])
        # its QEMU stopped (hard reboot, power on): the same port
        self.assertEqual(10000, self.ports.claim('a')[1])
        self.assertEqual([('127.0.0.1', 10000)], self.ports.held('a'))

    def test_a_port_in_use_gives_another(self):
        self.assertEqual(10000, self.ports.claim('a')[1])
        # something else listens there now (or its own QEMU still runs,
        # as while a rescue is prepared)
        self.busy.add(('127.0.0.1', 10000))
        self.busy.add(('127.0.0.1', 10001))
        self.assertEqual(10002, self.ports.claim('a')[1])
        # both stay held until the domain goes (the rescued original's
        # definition still names the first)
        self.assertEqual([10000, 10002],
                         [p for _h, p in self.ports.held('a')])
        self.assertEqual(10003, self.ports.claim('b')[1])

    def test_released_ports_are_reused(self):
        self.ports.claim('a')
        self.ports.claim('b')
        self.ports.release('a')
        self.ports.release('a')  # twice is fine
        self.assertEqual(10000, self.ports.claim('c')[1])

    def test_exhausted(self):
        for uuid in 'abcd':
            self.ports.claim(uuid)
        self.assertRaises(exception.SocketPortRangeExhaustedException,
                          self.ports.claim, 'e')

    def test_a_changed_address_or_range_gives_a_new_port(self):
        self.ports.claim('a')
        self.conf.config(group='serial_console', port_range='10100:10101')
        self.assertEqual(('127.0.0.1', 10100), self.ports.claim('a'))
        self.conf.config(group='serial_console',
                         proxyclient_address='192.0.2.1')
        self.assertEqual(('192.0.2.1', 10100), self.ports.claim('a'))

    def test_adopted_ports_are_not_handed_out(self):
        class Guest:
            uuid = 'old'

            def serial_tcp_ports(self, inactive=False):
                return [('127.0.0.1', 10000)]
        self.ports.adopt_guests([Guest()])
        self.assertEqual([('127.0.0.1', 10000)], self.ports.held('old'))
        self.assertEqual(10001, self.ports.claim('new')[1])
        self.assertEqual(10000, self.ports.claim('old')[1])

    def test_concurrent_claims_are_distinct(self):
        self.conf.config(group='serial_console', port_range='10000:10100')
        got = []
        lock = threading.Lock()

        def claim(n):
            port = self.ports.claim('u%d' % n)
            with lock:
                got.append(port)
        threads = [threading.Thread(target=claim, args=(n,))
                   for n in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(50, len(set(got)))

    def test_is_free_binds(self):
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        port = s.getsockname()[1]
        self.assertFalse(serial_console.is_free('127.0.0.1', port))
        s.close()
        self.assertTrue(serial_console.is_free('127.0.0.1', port))


class TestConsole(ConfTestCase):

    class Guest:
        def __init__(self, active=True, ports=(('127.0.0.1', 10003),)):
            self.active, self.ports = active, list(ports)

        def is_active(self):
            return self.active

        def serial_tcp_ports(self, inactive=False):
            return self.ports

    def test_running(self):
        c = serial_console.console(self.Guest())
        self.assertIsInstance(c, ctype.ConsoleSerial)
        self.assertEqual(('127.0.0.1', 10003), (c.host, c.port))

    def test_disabled(self):
        self.conf.config(group='serial_console', enabled=False)
        self.assertRaises(exception.ConsoleTypeUnavailable,
                          serial_console.console, self.Guest())

    def test_not_running(self):
        self.assertRaises(exception.ConsoleNotAvailable,
                          serial_console.console, self.Guest(active=False))
        self.assertRaises(exception.ConsoleNotAvailable,
                          serial_console.console, None)

    def test_defined_before_it_was_enabled(self):
        self.assertRaises(exception.ConsoleTypeUnavailable,
                          serial_console.console, self.Guest(ports=()))


class TestDriverSerialConsole(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.conf.config(group='serial_console', enabled=True,
                         port_range='10000:10010',
                         proxyclient_address='127.0.0.1')
        self.busy = set()
        self.drv.serial_ports._free = lambda h, p: (h, p) not in self.busy

    def serial(self, inst, inactive=False):
        guest = self.drv.host.lookup(inst.uuid)
        return guest.serial_tcp_ports(inactive=inactive)

    def test_spawn_listens_and_logs(self):
        inst = self.instance()
        self.spawn(inst)
        self.assertEqual([('127.0.0.1', 10000)], self.serial(inst))
        with open(self.inst_dir(inst) + '/domain.xml') as f:
            serial = ET.fromstring(f.read()).find('devices/serial')
        self.assertEqual(self.inst_dir(inst) + '/console.log',
                         serial.find('log').get('file'))
        c = self.drv.get_serial_console(self.ctx, inst)
        self.assertEqual(('127.0.0.1', 10000), (c.host, c.port))

    def test_errors(self):
        inst = self.instance()
        self.assertRaises(exception.ConsoleNotAvailable,
                          self.drv.get_serial_console, self.ctx, inst)
        self.spawn(inst)
        self.drv.power_off(inst)
        self.assertRaises(exception.ConsoleNotAvailable,
                          self.drv.get_serial_console, self.ctx, inst)
        self.conf.config(group='serial_console', enabled=False)
        self.assertRaises(exception.ConsoleTypeUnavailable,
                          self.drv.get_serial_console, self.ctx, inst)

    def test_disabled_keeps_the_file(self):
        self.conf.config(group='serial_console', enabled=False)
        inst = self.instance()
        self.spawn(inst)
        self.assertEqual([], self.serial(inst))
        self.assertEqual([], self.drv.serial_ports.held(inst.uuid))

    def test_power_on_keeps_the_port_or_takes_another(self):
        inst = self.instance()
        self.spawn(inst)
        self.drv.power_off(inst)
        self.drv.power_on(self.ctx, inst, None)
        self.assertEqual([('127.0.0.1', 10000)], self.serial(inst))
        self.drv.power_off(inst)
        self.busy.add(('127.0.0.1', 10000))  # taken meanwhile
        self.drv.power_on(self.ctx, inst, None)
        self.assertEqual([('127.0.0.1', 10001)], self.serial(inst))
        self.drv.reboot(self.ctx, inst, None, 'HARD')
        self.assertEqual([('127.0.0.1', 10001)], self.serial(inst))

    def test_destroy_releases(self):
        a, b = self.instance(1), self.instance(2)
        self.spawn(a)
        self.drv.destroy(self.ctx, a, None)
        self.assertEqual([], self.drv.serial_ports.held(a.uuid))
        self.spawn(b)
        self.assertEqual([('127.0.0.1', 10000)], self.serial(b))

    def test_failed_spawn_releases(self):
        inst = self.instance()

        def fail(*a, **kw):
            raise exception.NovaException('boom')
        self.useFixture(fixtures.MockPatch(
            'nova_clear.vif_events.plug_and_launch', side_effect=fail))
        self.assertRaises(exception.NovaException, self.spawn, inst)
        self.assertEqual([], self.drv.serial_ports.held(inst.uuid))

    def test_restarted_service_adopts_ports(self):
        inst = self.instance()
        self.spawn(inst)
        # a new nova-compute on the same libvirtd
        drv = type(self.drv)(self.drv.virtapi)
        drv.init_host('fakehost')
        self.assertEqual([('127.0.0.1', 10000)],
                         drv.serial_ports.held(inst.uuid))
