"""Clear Containers through the real OpenStack APIs of the all-in-one."""

import json
import os
import tempfile
import threading

import libvirt

from tests.integration import base

HELLO = 'hello from a Clear Container'


class TestServerLifecycle(base.IntegrationTestCase):

    def test_cli_create_console_delete(self):
        """openstack server create --wait -> ACTIVE, line, delete."""
        name = self.name('cli')
        self.addCleanup(self.delete_by_name, name)
        out = json.loads(self.cli(
            'server', 'create', '--wait', '--nic', 'none', '--flavor',
            'clear.tiny', '--image', 'clear-busybox', '-f', 'json', name))
        self.assertEqual('ACTIVE', out['status'])
        server = self.conn.compute.get_server(out['id'])
        line = self.workload_line(server)
        self.wait_console(server, line)
        self.assertIn(line, self.cli('console', 'log', 'show', out['id']))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.libvirt_domain(out['id']))
        self.assertTrue(os.path.isdir(self.instance_dir(out['id'])))
        self.cli('server', 'delete', '--wait', out['id'])
        # admins may still read a deleted server, as DELETED
        gone = self.conn.compute.find_server(out['id'])
        self.assertTrue(gone is None or gone.status == 'DELETED', gone)
        self.assert_gone_from_host(out['id'])

    def test_power_operations(self):
        server = self.create('power')
        line = self.workload_line(server)
        self.wait_console(server, line)
        compute = self.conn.compute
        dom = lambda: self.libvirt_domain(server.id)  # noqa: E731

        compute.reboot_server(server, 'SOFT')
        server = self.wait_status(server, 'ACTIVE')
        self.wait_console(server, line, count=2)

        compute.reboot_server(server, 'HARD')
        server = self.wait_status(server, 'ACTIVE')
        self.wait_console(server, line, count=3)

        compute.stop_server(server)
        server = self.wait_status(server, 'SHUTOFF')
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF, dom())

        compute.start_server(server)
        server = self.wait_status(server, 'ACTIVE')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, dom())
        self.wait_console(server, line, count=4)

        compute.pause_server(server)
        server = self.wait_status(server, 'PAUSED')
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, dom())
        compute.unpause_server(server)
        server = self.wait_status(server, 'ACTIVE')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, dom())

        compute.suspend_server(server)
        server = self.wait_status(server, 'SUSPENDED')
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF, dom())
        compute.resume_server(server)
        server = self.wait_status(server, 'ACTIVE')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, dom())
        # still the same running workload, not a new boot
        self.assertEqual(4, self.console(server).count(line))

        self.delete(server.id)
        self.assert_gone_from_host(server.id)

    def test_workload_exit_powers_off(self):
        """os_command_line's program exits -> the guest powers off."""
        server = self.create('exit', image=self.images['clear-busybox-exit'],
                             wait=False)
        server = self.wait_status(server, 'SHUTOFF')
        self.assertEqual(4, server.power_state)    # nova's SHUTDOWN
        out = self.wait_console(server, 'workload exited status=3')
        self.assertIn(HELLO, out)


class TestPlacement(base.IntegrationTestCase):

    def test_inventory_trait_and_required_flavor(self):
        host = self.state['compute_host']
        placement = self.conn.placement
        rps = [rp for rp in placement.resource_providers()
               if rp.name == host]
        self.assertEqual(1, len(rps), 'no resource provider named %s' % host)
        rp = rps[0]
        inventory = {i.resource_class: i
                     for i in placement.resource_provider_inventories(rp)}
        for rc in ('VCPU', 'MEMORY_MB', 'DISK_GB'):
            self.assertIn(rc, inventory)
            self.assertGreater(inventory[rc].total, 0)
        resp = placement.get('/resource_providers/%s/traits' % rp.id,
                             microversion='1.6')
        self.assertIn('CUSTOM_CLEAR_CONTAINERS', resp.json()['traits'])

        flavor = self.flavor('clear.tiny.cc')
        self.assertEqual('required', flavor.extra_specs.get(
            'trait:CUSTOM_CLEAR_CONTAINERS'))
        server = self.create('trait', flavor='clear.tiny.cc')
        self.assertEqual(host, server.compute_host)
        resp = placement.get('/allocations/%s' % server.id,
                             microversion='1.28')
        alloc = resp.json()['allocations']
        self.assertIn(rp.id, alloc)
        self.assertEqual(128, alloc[rp.id]['resources']['MEMORY_MB'])
        self.wait_console(server, self.workload_line(server))


class TestConcurrency(base.IntegrationTestCase):

    def test_five_at_once(self):
        servers = [None] * 5
        errors = []

        def create(i):
            try:
                servers[i] = self.create('five%d' % i, wait=False)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=create, args=(i,))
                   for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        servers = [self.wait_status(s, 'ACTIVE') for s in servers]
        for s in servers:
            self.wait_console(s, self.workload_line(s))
            self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                             self.libvirt_domain(s.id))
        # and all deleted at once
        threads = [threading.Thread(target=self._delete_into, args=(
            s.id, errors)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        for s in servers:
            self.assert_gone_from_host(s.id)

    def _delete_into(self, server_id, errors):
        try:
            self.delete(server_id)
        except BaseException as e:  # noqa: B036 - fail() raises, reported
            errors.append(str(e))


class TestBadImage(base.IntegrationTestCase):

    def test_corrupt_image_goes_to_error_and_leaves_nothing(self):
        from tests.functional import images
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'corrupt.qcow2')
            base.corrupt_qcow2(path, images.disk_image('fs'))
            image = self.conn.image.create_image(
                name=self.name('corrupt'), filename=path,
                disk_format='qcow2', container_format='bare', wait=True,
                validate_checksum=False)
        self.addCleanup(self.conn.image.delete_image, image,
                        ignore_missing=True)
        server = self.create('corrupt', image=image.id, wait=False)
        server = self.wait_status(server, 'ERROR')
        fault = server.fault or {}
        message = fault.get('message', '') + fault.get('details', '')
        words = ('corrupt', 'qemu-img', 'check', 'qcow2')
        self.assertTrue(any(w in message.lower() for w in words),
                        'fault does not name the problem: %r' % fault)
        self.assert_gone_from_host(server.id)
        cache = os.path.join(self.state['instances_path'], '_clear_base')
        if os.path.isdir(cache):
            left = [f for f in os.listdir(cache) if image.id in f]
            self.assertEqual([], left)
