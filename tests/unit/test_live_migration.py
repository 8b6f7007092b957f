"""Live migration (nova_clear.live_migration) against the fake libvirt,
the destination XML (nova_clear.live_migration_xml) and the second
libvirtd's configuration (nova_clear.deploy.second_libvirtd)."""

import json
import os
import threading
from unittest import mock
from xml.etree import ElementTree as ET

import fixtures
import libvirt
import testtools

import nova.conf
from nova import exception
from nova.network import model as network_model
from nova import objects
from nova.virt import images as nova_images

from nova_clear.deploy import second_libvirtd
from nova_clear import live_migration
from nova_clear import live_migration_xml as lm_xml
from nova_clear import vif as clear_vif
from tests.unit import test_driver

CONF = nova.conf.CONF

SRC_XML = """<domain type='qemu'><name>i</name><uuid>u</uuid>
<metadata><nova-clear:instance xmlns:nova-clear='%(ns)s'>
<nova-clear:host name='h1'/></nova-clear:instance></metadata>
<os><type machine='microvm'>hvm</type><kernel>/a1/vmlinuz</kernel>
<initrd>/a1/initrd.img</initrd></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/h1/inst/u/disk'/><backingStore type='file'>
<format type='raw'/><source file='/h1/cache/img'/></backingStore>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/>
<source file='/h1/inst/u/disk.config'/><target dev='vdb' bus='virtio'/>
<readonly/></disk>
<interface type='direct'><mac address='52:54:00:00:00:01'/>
<source dev='eth-h1' mode='bridge'/></interface>
<serial type='file'><source path='/h1/inst/u/console.log' append='on'/>
</serial></devices></domain>""" % {'ns': 'https://opendev.org/x/nova-clear/'
                                   'instance/1.0'}


class TestDestinationXml(testtools.TestCase):

    def test_paths_host_and_ports_become_the_destinations(self):
        iface = clear_vif.Interface(port_id='p', mac='52:54:00:00:00:01',
                                    type='direct', source_dev='eth-h2',
                                    source_mode='bridge')
        xml = lm_xml.destination_xml(
            SRC_XML, [('/h1/inst/u', '/h2/inst/u'), ('/h1/cache', '/h2/c')],
            {'/a1/vmlinuz': '/a2/vmlinuz', '/a1/initrd.img': '/a2/initrd'},
            'h2', [iface])
        root = ET.fromstring(xml)
        self.assertEqual('/a2/vmlinuz', root.findtext('os/kernel'))
        self.assertEqual('/a2/initrd', root.findtext('os/initrd'))
        files = [s.get('file') for s in root.iter('source') if s.get('file')]
        self.assertEqual(['/h2/inst/u/disk', '/h2/c/img',
                          '/h2/inst/u/disk.config'], files)
        self.assertEqual('/h2/inst/u/console.log',
                         root.find('devices/serial/source').get('path'))
        self.assertEqual('eth-h2',
                         root.find('devices/interface/source').get('dev'))
        self.assertIn("name=\"h2\"", xml)
        self.assertNotIn('/h1/', xml)

    def test_only_writable_disks_are_copied(self):
        self.assertEqual(['vda'], lm_xml.writable_disks(SRC_XML))
        self.assertEqual(
            [('vda', '/h1/inst/u/disk', 'qcow2', False),
             ('vdb', '/h1/inst/u/disk.config', 'raw', True)],
            lm_xml.disks_of(SRC_XML))

    def test_prefix_is_a_directory_not_a_string_prefix(self):
        xml = lm_xml.destination_xml(
            SRC_XML.replace('/h1/cache/img', '/h1/cache2/img'),
            [('/h1/cache', '/h2/c')], {}, 'h2')
        self.assertIn('/h1/cache2/img', xml)


class TestSecondLibvirtd(testtools.TestCase):

    def test_own_pid_files_and_sockets(self):
        script = second_libvirtd.namespace_script('/r', tcp_port=16519)
        self.assertIn('virtlogd -d -p /run/libvirt/virtlogd.pid', script)
        self.assertIn('libvirtd -d -l -p /run/libvirt/libvirtd.pid', script)
        self.assertIn('mount --bind /run/libvirt /r/host1-run', script)
        self.assertLess(script.index('/r/host1-run'),
                        script.index('mount --bind /r/run /run/libvirt'))
        self.assertEqual('qemu+unix:///system?socket=/r/run/libvirt-sock',
                         second_libvirtd.uri('/r'))
        self.assertEqual(
            'qemu+unix:///system?socket=/r/host1-run/libvirt-sock',
            second_libvirtd.peer_uri('/r'))

    def test_config(self):
        conf = second_libvirtd.libvirtd_conf('uuid-1', tcp_port=16519)
        self.assertIn('host_uuid = "uuid-1"', conf)
        self.assertIn('tcp_port = "16519"', conf)
        self.assertIn('listen_tcp = 0',
                      second_libvirtd.libvirtd_conf('uuid-1'))
        extra = second_libvirtd.qemu_conf_extra((49400, 49463))
        self.assertIn('migration_port_min = 49400', extra)
        self.assertNotIn('migration_host', extra)

    def test_prepare_copies_only_the_config_files(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        etc = os.path.join(tmp, 'host-etc')
        os.makedirs(os.path.join(etc, 'qemu'))
        for name in ('qemu.conf', 'libvirt.conf', 'libvirtd.conf'):
            with open(os.path.join(etc, name), 'w') as f:
                f.write('# host\n')
        root = os.path.join(tmp, 'h2')
        uuid = second_libvirtd.prepare(root, host_etc=etc,
                                       host_cache=os.path.join(tmp, 'none'))
        self.assertEqual(['libvirt.conf', 'libvirtd.conf', 'qemu.conf'],
                         sorted(os.listdir(os.path.join(root, 'etc'))))
        with open(os.path.join(root, 'etc', 'libvirtd.conf')) as f:
            self.assertIn(uuid, f.read())
        self.assertEqual({}, second_libvirtd.read_pids(root))


class TestLiveMigration(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.inst = self.instance()
        self.spawn(self.inst)
        self.inst.host = 'fakehost'
        self.inst.info_cache = objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo([]))
        info = mock.Mock(virtual_size=1 << 30, disk_size=1 << 20,
                         backing_file='/base')
        self.useFixture(fixtures.MockPatchObject(
            nova_images, 'qemu_img_info', return_value=info))
        self.execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute')).mock
        self.dom = self.conn.domains[self.inst.uuid]

    def _dest_data(self):
        # the destination is another host: its directory is elsewhere
        self.conf.config(group='clear', instances_path=os.path.join(
            self.tmp, 'inst2'))
        self.drv.instances_path = os.path.join(self.tmp, 'inst2')
        os.makedirs(self.drv.instances_path)
        self.addCleanup(setattr, self.drv, 'instances_path',
                        os.path.join(self.tmp, 'inst'))
        # the destination's libvirtd has no such domain
        dom = self.conn.domains.pop(self.inst.uuid)
        data = live_migration.check_destination(self.drv, self.inst, None,
                                                False)
        self.conn.domains[self.inst.uuid] = dom
        return data

    def test_block_migration_false_is_refused(self):
        self.assertRaises(exception.MigrationPreCheckError,
                          self.drv.check_can_live_migrate_destination,
                          self.ctx, self.inst, {}, {}, block_migration=False)

    def test_shared_instances_path_is_refused(self):
        self.assertRaises(exception.MigrationPreCheckError,
                          self.drv.check_can_live_migrate_destination,
                          self.ctx, self.inst, {}, {}, block_migration=None)

    def test_checks_and_pre_live_migration(self):
        data = self._dest_data()
        self.assertTrue(data.block_migration)
        facts = json.loads(data.filename)
        self.assertEqual(os.path.join(self.tmp, 'inst2', self.inst.uuid),
                         facts['instance_dir'])
        disk_info = self.drv.get_instance_disk_info(self.inst)
        self.drv.instances_path = os.path.join(self.tmp, 'inst')
        data = self.drv.check_can_live_migrate_source(self.ctx, self.inst,
                                                      data)
        self.assertEqual(self.inst.uuid, data.instance_relative_path)
        self.conn.domains.pop(self.inst.uuid)   # the destination's libvirtd
        self.drv.instances_path = os.path.join(self.tmp, 'inst2')
        data = self.drv.pre_live_migration(self.ctx, self.inst, None, [],
                                           disk_info, data)
        dest = os.path.join(self.tmp, 'inst2', self.inst.uuid)
        self.assertTrue(os.path.isdir(dest))
        cmd = self.execute.call_args_list[-1][0]
        self.assertEqual(('qemu-img', 'create'), cmd[:2])
        self.assertIn(os.path.join(dest, 'disk'), cmd)
        self.assertIn(str(1 << 30), cmd)
        # a failed migration: the destination removes what it made
        self.drv.rollback_live_migration_at_destination(
            self.ctx, self.inst, [], None, True, data)
        self.assertFalse(os.path.exists(dest))

    def test_source_refuses_a_stopped_domain(self):
        self.dom.st = libvirt.VIR_DOMAIN_SHUTOFF
        data = objects.LibvirtLiveMigrateData(disk_available_mb=100,
                                              disk_over_commit=False)
        self.assertRaises(exception.MigrationPreCheckError,
                          self.drv.check_can_live_migrate_source,
                          self.ctx, self.inst, data)

    def _migrate_data(self):
        facts = live_migration.dest_facts(self.drv, self.inst)
        facts.update(host='host2', instance_dir='/h2/' + self.inst.uuid,
                     image_cache='/h2/cache')
        return objects.LibvirtLiveMigrateData(
            filename=json.dumps(facts), target_connect_addr='127.0.0.1',
            block_migration=True)

    def _live_migrate(self):
        calls = []
        self.conf.config(group='clear',
                         live_migration_uri='qemu+tcp://%s:16519/system')
        self.drv.live_migration(
            self.ctx, self.inst, 'host2',
            lambda *a: calls.append('post'),
            lambda *a, **kw: calls.append(kw.get('migration_status',
                                                 'error')),
            True, self._migrate_data())
        return calls

    def test_live_migration_success(self):
        self.assertEqual(['post'], self._live_migrate())
        uri, params, flags = self.dom.migrated
        self.assertEqual('qemu+tcp://host2:16519/system', uri)
        self.assertEqual(['vda'],
                         params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS])
        self.assertEqual('tcp://127.0.0.1',
                         params[libvirt.VIR_MIGRATE_PARAM_URI])
        xml = params[libvirt.VIR_MIGRATE_PARAM_DEST_XML]
        self.assertIn('/h2/%s/disk' % self.inst.uuid, xml)
        self.assertNotIn(os.path.join(self.tmp, 'inst'), xml)
        for flag in (libvirt.VIR_MIGRATE_LIVE, libvirt.VIR_MIGRATE_PEER2PEER,
                     libvirt.VIR_MIGRATE_NON_SHARED_INC,
                     libvirt.VIR_MIGRATE_UNDEFINE_SOURCE,
                     libvirt.VIR_MIGRATE_PERSIST_DEST):
            self.assertTrue(flags & flag)
        self.assertNotIn(self.inst.uuid, self.drv.list_instance_uuids())

    def test_live_migration_failure_recovers(self):
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_FAILED
        self.assertEqual(['error'], self._live_migrate())
        self.assertTrue(self.dom.isActive())

    def test_abort_in_progress(self):
        started, release = threading.Event(), threading.Event()

        def on_migrate(dom):
            started.set()
            release.wait(10)
        self.dom.on_migrate = on_migrate
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_ABORTED
        result = []
        t = threading.Thread(target=lambda: result.extend(
            self._live_migrate()))
        t.start()
        self.assertTrue(started.wait(10))
        self.drv.live_migration_abort(self.inst)
        release.set()
        t.join(10)
        self.assertTrue(self.dom.aborted)
        self.assertEqual(['cancelled'], result)
        self.assertRaises(exception.NoActiveMigrationForInstance,
                          self.drv.live_migration_abort, self.inst)

    def test_force_complete_pauses_and_rollback_resumes(self):
        started, release = threading.Event(), threading.Event()

        def on_migrate(dom):
            started.set()
            release.wait(10)
        self.dom.on_migrate = on_migrate
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_FAILED
        t = threading.Thread(target=self._live_migrate)
        t.start()
        self.assertTrue(started.wait(10))
        self.drv.live_migration_force_complete(self.inst)
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, self.dom.st)
        release.set()
        t.join(10)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, self.dom.st)

    def test_paused_guest_runs_for_the_migration_and_arrives_paused(self):
        self.dom.suspend()
        states = []
        self.dom.on_migrate = lambda dom: states.append(dom.st)
        self.assertEqual(['post'], self._live_migrate())
        # QEMU 7.2 aborts block-migrating a stopped VM: it runs meanwhile
        self.assertEqual([libvirt.VIR_DOMAIN_RUNNING], states)
        _uri, _params, flags = self.dom.migrated
        self.assertTrue(flags & libvirt.VIR_MIGRATE_PAUSED)

    def test_running_guest_is_not_migrated_paused(self):
        self.assertEqual(['post'], self._live_migrate())
        self.assertFalse(self.dom.migrated[2] & libvirt.VIR_MIGRATE_PAUSED)

    def test_failed_migration_of_a_paused_guest_pauses_it_again(self):
        self.dom.suspend()
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_FAILED
        self.assertEqual(['error'], self._live_migrate())
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, self.dom.st)

    def test_rollback_at_source_pauses_a_guest_paused_before(self):
        self.dom.suspend()
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_ABORTED
        seen = []

        def recover(ctx, instance, dest, md, migration_status='error'):
            # as Nova's _rollback_live_migration: the driver's rollback
            seen.append((migration_status, self.dom.st))
            self.drv.rollback_live_migration_at_source(ctx, instance, md)
            seen.append(self.dom.st)
        self.drv.live_migration(self.ctx, self.inst, 'host2', None, recover,
                                True, self._migrate_data())
        self.assertEqual([('cancelled', libvirt.VIR_DOMAIN_RUNNING),
                          libvirt.VIR_DOMAIN_PAUSED], seen)

    def test_force_complete_of_a_paused_guest_keeps_it_paused(self):
        started, release = threading.Event(), threading.Event()

        def on_migrate(dom):
            started.set()
            release.wait(10)
        self.dom.suspend()
        self.dom.on_migrate = on_migrate
        self.dom.migrate_error = libvirt.VIR_ERR_OPERATION_FAILED
        t = threading.Thread(target=self._live_migrate)
        t.start()
        self.assertTrue(started.wait(10))
        self.drv.live_migration_force_complete(self.inst)
        release.set()
        t.join(10)
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, self.dom.st)

    def test_console_history_is_shown_first(self):
        files = self.drv._files(self.inst)
        with open(files.console_history, 'wb') as f:
            f.write(b'before\n')
        with mock.patch('nova.privsep.path.last_bytes',
                        return_value=(b'after\n', 0)):
            with open(files.console_log, 'wb'):
                pass
            self.assertEqual(b'before\nafter\n',
                             self.drv.get_console_output(self.ctx,
                                                         self.inst))

    def test_destination_logs_the_completed_migrations_figures(self):
        self.dom.completed_job = {'time_elapsed': 900, 'downtime': 48,
                                  'memory_processed': 64 << 20,
                                  'memory_iteration': 3,
                                  'disk_processed': 16 << 20}
        logs = self.useFixture(fixtures.FakeLogger(
            name='nova_clear.live_migration'))
        self.drv.post_live_migration_at_destination(self.ctx, self.inst, [],
                                                    True)
        self.assertIn('Live migration completed: 900 ms (libvirt), '
                      'downtime 48 ms, memory 64.0 MiB sent in 3 '
                      'iterations, disks 16.0 MiB', logs.output)

    def test_destination_without_completed_figures_logs_none(self):
        logs = self.useFixture(fixtures.FakeLogger(
            name='nova_clear.live_migration'))
        self.drv.post_live_migration_at_destination(self.ctx, self.inst, [],
                                                    True)
        self.assertNotIn('completed', logs.output)
