"""The all-in-one's service modules keep the contract tools.aio.stack
runs (tools/aio/services/__init__.py)."""

from unittest import mock

import testtools

from tools.aio import process
from tools.aio import services

FUNCTIONS = ('configure', 'init', 'start', 'wait', 'stop')


class TestServiceContract(testtools.TestCase):

    def test_every_service_has_the_contract(self):
        for svc in services.ORDER:
            for name in FUNCTIONS:
                self.assertTrue(callable(getattr(svc, name, None)),
                                '%s.%s' % (svc.__name__, name))
            self.assertIsInstance(svc.PROCESSES, list, svc.__name__)
            self.assertTrue(svc.PROCESSES, svc.__name__)
            self.assertLessEqual(set(svc.PORTS), set(svc.PROCESSES))
            self.assertLessEqual(set(svc.CONFIG_FILES), set(svc.PROCESSES))
            for entry in svc.CATALOG:
                self.assertEqual(3, len(entry), svc.__name__)

    def test_needs_come_earlier_in_the_order(self):
        for i, svc in enumerate(services.ORDER):
            for need in svc.NEEDS:
                self.assertIn(need, services.ORDER[:i], svc.__name__)

    def test_process_names_are_unique(self):
        names = services.processes()
        self.assertEqual(len(names), len(set(names)))
        # what tools/allinone status, restart and the tests rely on
        for name in ('mariadb', 'rabbitmq', 'keystone', 'nova-api',
                     'neutron-macvtap-agent', 'nova-compute'):
            self.assertIn(name, names)
        # the first host's nova-compute starts after every other service
        # of the first host; the second host's processes (--computes 2)
        # come last, its nova-compute at the end
        self.assertEqual(
            ['virtlogd-2', 'libvirtd-2', 'neutron-macvtap-agent-2',
             'nova-compute-2'], names[-4:])
        self.assertEqual('nova-compute', names[-5])


class TestSerialConsole(testtools.TestCase):

    def test_compute_hands_out_the_proxy_it_runs(self):
        from tools.aio.services import serial_proxy
        settings = serial_proxy.compute_settings()
        self.assertEqual('true', settings['enabled'])
        self.assertEqual('ws://127.0.0.1:%d/' % serial_proxy.PORT,
                         settings['base_url'])
        self.assertEqual(6083, serial_proxy.PORTS['nova-serialproxy'])
        self.assertEqual('127.0.0.1', settings['proxyclient_address'])
        start, stop = map(int, settings['port_range'].split(':'))
        self.assertLess(start, stop)
        self.assertIn('nova-serialproxy', services.processes())


class TestUwsgi(testtools.TestCase):

    def test_chunked_parts_of_glanceclient_are_accepted(self):
        # glanceclient uploads (nova's snapshots) in chunked parts of
        # 1 MiB: over uWSGI's default limit, the upload fails with "unable
        # to receive chunked part" (HTTP 500)
        from glanceclient.common import http
        with mock.patch.object(process, 'check_port_free'), \
                mock.patch.object(process, 'start') as start:
            process.uwsgi('glance', 9292, 'glance.wsgi.api:application', {})
        argv = start.call_args[0][1]
        limit = int(argv[argv.index('--chunked-input-limit') + 1])
        self.assertGreater(limit, http.CHUNKSIZE + 64)


class TestSecondHost(testtools.TestCase):
    """The second compute host of ``tools/allinone up --computes 2``."""

    def test_the_two_hosts_reach_each_others_libvirtd(self):
        from nova_clear.deploy import second_libvirtd
        from tools.aio.services import compute2
        root = compute2.LIBVIRT_ROOT
        # host 1's libvirtd sends to host 2's socket; host 2's reaches
        # host 1's through the bind mount in its namespace
        self.assertEqual(
            {'live_migration_uri': second_libvirtd.uri(root),
             'live_migration_inbound_addr': '127.0.0.1'},
            compute2.host1_migration())
        self.assertIn('/host1-run/', second_libvirtd.peer_uri(root))
        # every libvirt socket path fits sockaddr_un
        self.assertLess(len(second_libvirtd.peer_uri(root).split('=')[1]),
                        108)

    def test_host2_has_its_own_everything(self):
        from tools.aio import hostnet
        from tools.aio.services import compute2
        from tools.aio.services import nova
        from tools.aio.services import nova_compute
        from tools.aio.services import serial_proxy
        self.assertTrue(compute2.HOST.endswith('-2'))
        for mine, first in ((compute2.INSTANCES, nova.INSTANCES),
                            (compute2.STATE_PATH, nova.STATE_PATH),
                            (compute2.LOCKS, nova_compute.LOCKS),
                            (compute2.ASSETS, nova_compute.ASSETS),
                            (compute2.CONF, nova_compute.CONF)):
            self.assertNotEqual(mine, first)
            self.assertFalse(mine.startswith(first + '/'))
        self.assertNotEqual(hostnet.NET.device, hostnet.NET2.device)
        self.assertNotEqual(hostnet.NET.peer, hostnet.NET2.peer)
        low, high = map(int, serial_proxy.PORT_RANGE.split(':'))
        low2, high2 = map(int, compute2.SERIAL_RANGE.split(':'))
        self.assertTrue(high < low2 or high2 < low)

    def test_computes_from_the_command_line_or_the_state(self):
        import json
        import os
        import tempfile
        from tools.aio import settings
        self.addCleanup(setattr, settings, 'COMPUTES', settings.COMPUTES)
        self.addCleanup(setattr, settings, 'STATE', settings.STATE)
        d = tempfile.mkdtemp()
        settings.STATE = os.path.join(d, 'aio.json')
        settings.COMPUTES = None
        self.assertEqual(1, settings.computes())
        with open(settings.STATE, 'w') as f:
            json.dump({'computes': 2}, f)
        self.assertEqual(2, settings.computes())
        settings.COMPUTES = 1
        self.assertEqual(1, settings.computes())
