"""Base of the integration tests: a running all-in-one (tools/allinone).

The tests talk to the real OpenStack APIs (openstacksdk, and the
``openstack`` CLI where the issue names it), and look at the host through
libvirt and the instances directory.  They are skipped, with the reason,
only when the all-in-one is not up; ``tools/allinone up`` (or ``start``)
brings it up.
"""

import json
import os
import struct
import subprocess
import time
import uuid

import testtools
from testtools import content

import libvirt

from nova_clear.deploy import aio
from tests.functional import images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIMEOUT = float(os.environ.get('NOVA_CLEAR_IT_TIMEOUT', '240'))
# lookups of deleted domains are expected: keep libvirt from printing them
libvirt.registerErrorHandler(lambda ctx, err: None, None)


def corrupt_qcow2(path, source):
    """A qcow2 image with a valid header and garbage L1/refcount tables."""
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
                    source, path], check=True)
    with open(path, 'r+b') as f:
        header = f.read(64)
        l1 = struct.unpack('>Q', header[40:48])[0]
        refcount = struct.unpack('>Q', header[48:56])[0]
        f.seek(l1)
        f.write(b'\xff' * 64)
        f.seek(refcount)
        f.write(b'\xee' * 64)


class IntegrationTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        reason = aio.not_up_reason()
        if reason:
            self.skipTest(reason)
        self.state = aio.state()
        self.conn = aio.connection()
        self.images = self.state['images']
        self.line = self.state['workload_line']

    def recorded_figures(self, log, key):
        """A dict the test fills with its figures: attached to its result
        and appended, as ``{"test", "at", key}``, to the all-in-one's
        ``logs/<log>`` (stestr keeps details of failures only)."""
        figures = {}
        self.addDetail(key, content.Content(
            content.UTF8_TEXT,
            lambda: [json.dumps(figures, sort_keys=True).encode()]))

        def record():
            if figures:
                with open(os.path.join(self.state['logs'], log), 'a') as f:
                    f.write(json.dumps({'test': self.id().rsplit('.', 1)[-1],
                                        'at': time.time(), key: figures},
                                       sort_keys=True) + '\n')
        self.addCleanup(record)
        return figures

    # -- servers ------------------------------------------------------

    def container_image(self, cmd, tag='img'):
        """The sample container image uploaded to Glance, running ``cmd``
        as root (``clear_cmd``); deleted in a cleanup."""
        image = self.conn.image.create_image(
            name=self.name(tag), filename=images.container_image('docker'),
            disk_format='raw', container_format='docker', wait=True,
            validate_checksum=False, clear_cmd=json.dumps([cmd]),
            clear_user='root')
        self.addCleanup(self.conn.image.delete_image, image,
                        ignore_missing=True)
        return image

    def name(self, tag):
        return 'it-%s-%s' % (tag, uuid.uuid4().hex[:6])

    def flavor(self, name='clear.tiny'):
        return self.conn.compute.find_flavor(name, ignore_missing=False)

    def create(self, tag, image=None, flavor='clear.tiny', wait=True):
        name = self.name(tag)
        server = self.conn.compute.create_server(
            name=name, image_id=image or self.images['clear-busybox'],
            flavor_id=self.flavor(flavor).id, networks='none')
        self.addCleanup(self.delete, server.id)
        if wait:
            server = self.wait_status(server, 'ACTIVE')
        return server

    def delete(self, server_id, timeout=TIMEOUT):
        """Delete and wait until the API no longer has it (not ERROR)."""
        from openstack import exceptions as sdk_exc
        server = self.conn.compute.find_server(server_id)
        if server is None:
            return
        self.conn.compute.delete_server(server, ignore_missing=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                server = self.conn.compute.get_server(server_id)
            except sdk_exc.NotFoundException:
                return
            if server.status == 'DELETED':
                return
            if server.status == 'ERROR' and not server.task_state:
                self.fail('delete of %s failed: ERROR, %s' % (
                    server.name, (server.fault or {}).get('message')))
            if time.monotonic() > deadline:
                self.fail('%s not deleted after %ds (%s)' % (
                    server.name, timeout, server.status))
            time.sleep(0.5)

    def delete_by_name(self, name):
        for server in self.conn.compute.servers(name='^%s$' % name):
            self.delete(server.id)

    def wait_status(self, server, status, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            server = self.conn.compute.get_server(server)
            if server.status == status and not server.task_state:
                return server
            if server.status == 'ERROR' and status != 'ERROR':
                self.fail('%s went to ERROR: %s' % (server.name,
                                                    server.fault))
            if time.monotonic() > deadline:
                self.fail('%s is %s/%s, not %s after %ds' % (
                    server.name, server.status, server.task_state, status,
                    timeout))
            time.sleep(0.5)

    def console(self, server):
        out = self.conn.compute.get_server_console_output(server)
        return out.get('output') or ''

    def wait_console(self, server, text, timeout=TIMEOUT, count=1):
        deadline = time.monotonic() + timeout
        while True:
            out = self.console(server)
            if out.count(text) >= count:
                return out
            if time.monotonic() > deadline:
                self.fail('%r (x%d) not in the console of %s after %ds:\n%s'
                          % (text, count, server.name, timeout, out[-2000:]))
            time.sleep(0.5)

    def workload_line(self, server):
        return '%s %s' % (self.line, server.name)

    # -- the host -----------------------------------------------------

    def libvirt_domain(self, server_id):
        conn = libvirt.openReadOnly('qemu:///system')
        try:
            return conn.lookupByUUIDString(server_id).state()[0]
        except libvirt.libvirtError:
            return None
        finally:
            conn.close()

    def instance_dir(self, server_id):
        return os.path.join(self.state['instances_path'], server_id)

    def assert_gone_from_host(self, server_id, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            dom = self.libvirt_domain(server_id)
            files = os.path.exists(self.instance_dir(server_id))
            if dom is None and not files:
                return
            if time.monotonic() > deadline:
                self.fail('left on the host for %s: domain=%s, files=%s'
                          % (server_id, dom, files))
            time.sleep(0.5)

    def cli(self, *args):
        env = dict(os.environ)
        env['OS_CLOUD'] = self.state['cloud']
        env['OS_CLIENT_CONFIG_FILE'] = self.state['clouds']
        proc = subprocess.run(
            [os.path.join(self.state['venv'], 'bin', 'openstack')] +
            list(args), env=env, capture_output=True, text=True,
            timeout=TIMEOUT)
        if proc.returncode:
            self.fail('openstack %s: %s' % (' '.join(args), proc.stderr))
        return proc.stdout
