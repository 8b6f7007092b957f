"""Base of the functional tests: a real libvirtd + QEMU, real guest assets,
real nova.objects, and local image files standing in for Glance
(nova_clear.deploy.localboot, as the boot benchmarks use)."""

import atexit
import itertools
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid

import fixtures
from oslo_config import fixture as config_fixture
import testtools

import libvirt
from nova.compute import power_state
import nova.conf
from nova import context as nova_context

from nova_clear.deploy import localboot
from tests.functional import images
from tests.functional import services

CONF = nova.conf.CONF
READY_TIMEOUT = float(os.environ.get('NOVA_CLEAR_READY_TIMEOUT', '120'))


class EventRecorder:
    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, uuid, transition, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.get_instance_uuid() == uuid and \
                            e.get_transition() == transition:
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        'no %s event for %s; got %s' %
                        (transition, uuid, [str(e) for e in self.events]))
                self.cond.wait(left)


_WORKER_DIR = []


def worker_dir():
    """This test process's directory: every test's files are below it,
    and the privsep daemons' configuration names it as the image cache
    (the daemon refuses paths outside it)."""
    if not _WORKER_DIR:
        path = tempfile.mkdtemp(prefix='nova-clear-ft-',
                                dir=os.environ.get('NOVA_CLEAR_TEST_TMP',
                                                   '/var/tmp'))
        os.chmod(path, 0o755)
        localboot.privsep_conf(path, path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _WORKER_DIR.append(path)
    return _WORKER_DIR[0]


class FunctionalTestCase(testtools.TestCase):
    """Each test gets its own instances path and image cache."""

    virt_type = 'qemu'

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(600, gentle=True))
        services.ensure_libvirt()
        if CONF._args is None:
            # The config fixture's cleanup un-parses CONF; nova code reads
            # CONF.config_file, which exists only once CONF was called.
            CONF([], project='nova', default_config_files=[])
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.tmp = tempfile.mkdtemp(prefix='test-', dir=worker_dir())
        # QEMU runs as libvirt-qemu and must reach the disks, as it does
        # under nova's instances_path.
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.assets_path = images.guest_assets()
        self.conf.config(group='clear', virt_type=self.virt_type,
                         assets_path=self.assets_path,
                         instances_path=os.path.join(self.tmp, 'instances'),
                         image_cache_path=os.path.join(self.tmp, 'cache'),
                         soft_reboot_timeout=30)
        # Each test is its own nova-compute host on the shared libvirtd:
        # it sees only its own domains, as two services sharing one would.
        self.conf.config(state_path=self.tmp, instances_path=os.path.join(
            self.tmp, 'instances'), host='ft-%s' % uuid.uuid4().hex[:12])
        self.conf.config(group='oslo_concurrency',
                         lock_path=os.path.join(self.tmp, 'locks'))
        # No sudo: the privsep daemons start from this venv as root, with
        # the worker's configuration: one daemon serves all tests of a
        # worker, and nova-clear's only works inside its image cache.
        helper = localboot.privsep_helper(
            os.path.join(worker_dir(), 'privsep.conf'))
        self.conf.config(group='nova_sys_admin', helper_command=helper)
        self.conf.config(group='clear_sys_admin', helper_command=helper)
        self.glance = localboot.LocalGlance(os.path.join(self.tmp, 'glance'))
        self.addCleanup(self.glance.install())
        self.context = nova_context.RequestContext('fake-user', 'fake-project',
                                                   is_admin=True)
        self.events = EventRecorder()
        # Domain names (instance-%08x of the id) are host-wide: parallel
        # test workers must not collide.
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def make_driver(self, init=True):
        return localboot.driver(init=init, listener=self.events)

    def container_image(self, cmd, user='root', **properties):
        """The sample container image (docker archive) in the test's
        Glance, running ``cmd`` as ``user``; returns its id."""
        properties.update(clear_cmd=json.dumps([cmd]), clear_user=user)
        return self.glance.add(images.container_image('docker'), 'raw',
                               container_format='docker',
                               properties=properties)

    def config_drive_without_services(self):
        """Config drives for every instance: Nova's metadata code asks
        Neutron for security groups and the database for block devices;
        neither runs in these tests (the all-in-one integration tests have
        both)."""
        from nova import objects
        self.conf.config(force_config_drive=True)
        self.useFixture(fixtures.MockPatch(
            'nova.network.security_group_api.get_instance_security_groups',
            return_value=[]))
        self.useFixture(fixtures.MockPatch(
            'nova.objects.BlockDeviceMappingList.get_by_instance_uuid',
            return_value=objects.BlockDeviceMappingList(objects=[])))

    def make_instance(self, image_id, memory_mb=128, vcpus=1, root_gb=1):
        inst_id = next(self._ids)
        return localboot.instance(
            self.context, self.glance.show(None, image_id), inst_id,
            'clear-%d' % inst_id, memory_mb=memory_mb, vcpus=vcpus,
            root_gb=root_gb)

    def spawn(self, drv, image_id, **kw):
        instance = self.make_instance(image_id, **kw)
        drv.spawn(self.context, instance, self.glance.image_meta(image_id),
                  [], None, {}, network_info=None)
        self.addCleanup(self._destroy_quietly, drv, instance)
        return instance

    def _destroy_quietly(self, drv, instance):
        try:
            drv.destroy(self.context, instance, None)
        except Exception:
            pass

    def console(self, drv, instance):
        return drv.get_console_output(self.context,
                                      instance).decode('utf-8', 'replace')

    def wait_console(self, drv, instance, needle, count=1,
                     timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        stopped_since = time.monotonic()
        while True:
            text = self.console(drv, instance)
            if text.count(needle) >= count:
                return text
            stopped = drv.get_info(instance).state == power_state.SHUTDOWN
            if stopped and time.monotonic() > stopped_since + 2:
                timeout = 'the guest stopped; %s' % timeout
                deadline = 0
            elif not stopped:
                stopped_since = time.monotonic()
            if time.monotonic() > deadline:
                self.fail('%r (x%d) not in the console of %s after %ss:\n%s'
                          % (needle, count, instance.uuid, timeout,
                             text[-3000:]))
            time.sleep(0.2)

    def wait_ready(self, drv, instance, count=1):
        return self.wait_console(
            drv, instance, 'nova-clear: ready %s' % instance.uuid, count)

    def assert_gone(self, drv, instance):
        """No domain, no files of the instance remain."""
        conn = libvirt.open('qemu:///system')
        try:
            self.assertRaises(libvirt.libvirtError,
                              conn.lookupByUUIDString, instance.uuid)
        finally:
            conn.close()
        self.assertNotIn(instance.uuid, drv.list_instance_uuids())
        self.assertFalse(os.path.exists(
            os.path.join(CONF['clear'].instances_path, instance.uuid)))
