"""The Guest wrapper and the Host calls that hand Guests out, on the fake
libvirt (tests/functional runs the same against libvirtd + QEMU)."""

from unittest import mock

import fixtures
import testtools

import libvirt
from nova.compute import power_state
from nova import exception

from nova_clear import domain as domain_xml
from nova_clear import exception as clear_exc
from nova_clear import host as clear_host
from nova_clear import libvirt_guest
from tests.unit import fake_libvirt

UUID = '00000000-0000-0000-0000-000000000001'


def xml(uuid=UUID, name='instance-1', host='me', ours=True):
    meta = ('<metadata><n:instance xmlns:n="%s"><n:host name="%s"/>'
            '</n:instance></metadata>' % (domain_xml.NS_URI, host)
            if ours else '')
    return ('<domain><name>%s</name><uuid>%s</uuid><memory>256</memory>'
            '<vcpu>2</vcpu>%s</domain>' % (name, uuid, meta))


def fail(code, msg='failed'):
    def raiser(*args):
        raise fake_libvirt._error(code, msg)
    return raiser


class TestPowerStateMapping(testtools.TestCase):

    def test_states(self):
        m = libvirt_guest.power_state_of
        self.assertEqual(power_state.RUNNING,
                         m(libvirt.VIR_DOMAIN_RUNNING))
        self.assertEqual(power_state.RUNNING,
                         m(libvirt.VIR_DOMAIN_BLOCKED))
        self.assertEqual(power_state.PAUSED, m(libvirt.VIR_DOMAIN_PAUSED))
        self.assertEqual(power_state.SHUTDOWN,
                         m(libvirt.VIR_DOMAIN_SHUTOFF))
        self.assertEqual(power_state.SHUTDOWN,
                         m(libvirt.VIR_DOMAIN_SHUTDOWN))
        self.assertEqual(power_state.CRASHED, m(libvirt.VIR_DOMAIN_CRASHED))
        self.assertEqual(power_state.SUSPENDED,
                         m(libvirt.VIR_DOMAIN_PMSUSPENDED))
        self.assertEqual(power_state.NOSTATE, m(99))


class GuestTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conn = fake_libvirt.FakeConnection()
        self.host = clear_host.Host('test:///default', owner='me')
        self.useFixture(fixtures.MockPatchObject(
            clear_host.Host, 'get_connection', return_value=self.conn))
        self.guest = self.host.define(xml())
        self.dom = self.conn.domains[UUID]


class TestHostHandsOutGuests(GuestTestCase):

    def test_define_lookup_find(self):
        self.assertIsInstance(self.guest, libvirt_guest.Guest)
        self.assertEqual((UUID, 'instance-1'),
                         (self.guest.uuid, self.guest.name))
        self.assertEqual(UUID, self.host.lookup(UUID).uuid)
        self.assertEqual(UUID, self.host.find(UUID).uuid)
        self.assertEqual('instance-1',
                         self.host.find_by_name('instance-1').name)
        other = '00000000-0000-0000-0000-000000000009'
        self.assertIsNone(self.host.find(other))
        self.assertIsNone(self.host.find_by_name('nope'))
        err = self.assertRaises(exception.InstanceNotFound,
                                self.host.lookup, other)
        self.assertIn(other, str(err))
        self.assertIn(UUID, repr(self.guest))

    def test_list_guests_ours_by_host(self):
        self.host.define(xml('00000000-0000-0000-0000-000000000002', 'b',
                             host='other'))
        self.host.define(xml('00000000-0000-0000-0000-000000000003', 'c',
                             ours=False))
        gone = self.host.define(
            xml('00000000-0000-0000-0000-000000000004', 'd'))
        self.conn.domains[gone.uuid].metadata = fail(
            libvirt.VIR_ERR_NO_DOMAIN)
        self.assertEqual(['instance-1'],
                         [g.name for g in self.host.list_guests('me')])
        self.assertEqual(['instance-1', 'b'],
                         [g.name for g in self.host.list_guests()])

    def test_list_guests_raises_other_errors(self):
        self.dom.metadata = fail(libvirt.VIR_ERR_INTERNAL_ERROR)
        self.assertRaises(libvirt.libvirtError, self.host.list_guests)


class TestGuestFacts(GuestTestCase):

    def test_power_states(self):
        g = self.guest
        self.assertFalse(g.is_active())
        self.assertEqual(power_state.SHUTDOWN, g.get_power_state())
        g.launch()
        self.assertTrue(g.is_active())
        self.assertEqual(power_state.RUNNING, g.get_power_state())
        g.pause()
        self.assertEqual(power_state.PAUSED, g.get_power_state())
        g.resume()
        self.assertEqual(power_state.RUNNING, g.get_power_state())

    def test_managed_save_is_suspended(self):
        g = self.guest
        g.launch()
        g.managed_save()
        self.assertFalse(g.is_active())
        self.assertTrue(g.has_managed_save())
        self.assertEqual(power_state.SUSPENDED, g.get_power_state())
        g.remove_managed_save()
        self.assertFalse(g.has_managed_save())
        self.assertEqual(power_state.SHUTDOWN, g.get_power_state())

    def test_power_state_of_a_vanished_domain(self):
        self.dom.state = fail(libvirt.VIR_ERR_NO_DOMAIN)
        err = self.assertRaises(exception.InstanceNotFound,
                                self.guest.get_power_state)
        self.assertIn(UUID, str(err))
        self.dom.state = fail(libvirt.VIR_ERR_INTERNAL_ERROR)
        self.assertRaises(libvirt.libvirtError, self.guest.get_power_state)

    def test_active_info(self):
        self.assertIsNone(self.guest.active_info())
        self.guest.launch()
        info = self.guest.active_info()
        self.assertEqual((2, 256 * 1024),
                         (info.vcpus, info.max_mem_kib))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, info.state)
        for code in (libvirt.VIR_ERR_NO_DOMAIN,
                     libvirt.VIR_ERR_OPERATION_INVALID):
            self.dom.info = fail(code)
            self.assertIsNone(self.guest.active_info())
        self.dom.info = fail(libvirt.VIR_ERR_INTERNAL_ERROR)
        self.assertRaises(libvirt.libvirtError, self.guest.active_info)

    def test_metadata_and_xml(self):
        self.assertIn('name="me"', self.guest.clear_metadata())
        theirs = self.host.define(
            xml('00000000-0000-0000-0000-000000000002', 'b', ours=False))
        self.assertIsNone(theirs.clear_metadata())
        self.dom.metadata = fail(libvirt.VIR_ERR_NO_DOMAIN)
        self.assertRaises(exception.InstanceNotFound,
                          self.guest.clear_metadata)
        self.assertEqual(xml(), self.guest.get_xml_desc())
        with mock.patch.object(self.dom, 'XMLDesc') as desc:
            self.guest.get_xml_desc(inactive=True)
            desc.assert_called_once_with(libvirt.VIR_DOMAIN_XML_INACTIVE)


class TestGuestPower(GuestTestCase):

    def test_launch_paused_then_resume(self):
        started = []
        self.conn.on_start = lambda dom, paused: started.append(paused)
        self.guest.launch(pause=True)
        self.assertEqual([True], started)
        self.assertEqual(power_state.PAUSED, self.guest.get_power_state())
        self.guest.resume()
        self.assertEqual(power_state.RUNNING, self.guest.get_power_state())

    def test_launch_failure_names_guest_and_reason(self):
        self.conn.fail_start = 'qemu exploded'
        err = self.assertRaises(clear_exc.ClearContainerStartFailed,
                                self.guest.launch)
        self.assertIn('instance-1', str(err))
        self.assertIn('qemu exploded', str(err))

    def test_shutdown(self):
        self.guest.launch()
        self.guest.shutdown()
        self.assertTrue(self.guest.wait_for_shutoff(0))
        # not running: libvirt refuses
        err = self.assertRaises(clear_exc.GuestOperationFailed,
                                self.guest.shutdown)
        self.assertIn('shut down', str(err))
        self.assertIn('not running', str(err))

    def test_wait_for_shutoff(self):
        self.conn.guest_honours_acpi = False
        self.guest.launch()
        self.guest.shutdown()
        self.assertFalse(self.guest.wait_for_shutoff(0.05, interval=0.01))
        self.dom.isActive = fail(libvirt.VIR_ERR_NO_DOMAIN)
        self.assertTrue(self.guest.wait_for_shutoff(1))
        self.dom.isActive = fail(libvirt.VIR_ERR_INTERNAL_ERROR)
        self.assertRaises(libvirt.libvirtError,
                          self.guest.wait_for_shutoff, 1)

    def test_destroy(self):
        self.guest.destroy()  # off: nothing to do
        self.guest.launch()
        with mock.patch.object(self.dom, 'destroyFlags',
                               wraps=self.dom.destroyFlags) as flags:
            self.guest.destroy()
            flags.assert_called_once_with(
                libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
        self.assertFalse(self.guest.is_active())

    def test_destroy_kills_when_graceful_fails(self):
        self.guest.launch()
        self.dom.destroyFlags = fail(libvirt.VIR_ERR_SYSTEM_ERROR,
                                     'SIGTERM ignored')
        self.guest.destroy()
        self.assertFalse(self.guest.is_active())

    def test_destroy_failure(self):
        self.guest.launch()
        self.dom.destroyFlags = fail(libvirt.VIR_ERR_SYSTEM_ERROR)
        self.dom.destroy = fail(libvirt.VIR_ERR_SYSTEM_ERROR, 'stuck')
        err = self.assertRaises(clear_exc.GuestOperationFailed,
                                self.guest.destroy)
        self.assertIn('stuck', str(err))
        # stopped or gone meanwhile: done
        for code in (libvirt.VIR_ERR_NO_DOMAIN,
                     libvirt.VIR_ERR_OPERATION_INVALID):
            self.dom.destroyFlags = fail(code)
            self.guest.destroy()


class TestGuestUndefine(GuestTestCase):

    def test_undefine_with_managed_save_and_nvram(self):
        self.guest.undefine()
        self.assertEqual({}, self.conn.domains)
        self.assertEqual(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                         libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
                         self.dom.undefine_flags)
        self.guest.undefine()  # gone: nothing to do
        self.assertRaises(exception.InstanceNotFound,
                          self.guest.get_power_state)

    def test_undefine_failure(self):
        self.dom.undefineFlags = fail(libvirt.VIR_ERR_INTERNAL_ERROR,
                                      'busy')
        err = self.assertRaises(clear_exc.GuestOperationFailed,
                                self.guest.undefine)
        self.assertIn('undefine', str(err))
        self.assertIn('busy', str(err))
