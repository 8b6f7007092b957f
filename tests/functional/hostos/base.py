"""Shared pieces of the host OS functional tests: trees, keys, the CLIs.

Every test works in its own temporary directory with its own HTTP server
on a free port, so parallel workers never share state.
"""

import os
import subprocess
import sys

import fixtures
import testtools

from nova_clear.hostos import boot
from nova_clear.hostos import manifest
from nova_clear.hostos import stage
from tests.functional.hostos import httpd

BUSYBOX = '/bin/busybox'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
_MAIN = 'import sys; from nova_clear.hostos import cli; sys.exit(cli.%s())'


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def small_os(top, version, init=None, extra=None, boot_dir=None):
    """A tiny host OS tree: busybox, an init, versioned files.

    ``boot_dir`` holds the kernel and boot initramfs to ship in /boot.
    """
    for d in ('bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'sysroot',
              'boot', 'usr/lib/os-%d.0' % version):
        os.makedirs(os.path.join(top, d), exist_ok=True)
    os.symlink('/bin/busybox', os.path.join(top, 'bin', 'sh'))
    with open(BUSYBOX, 'rb') as f:
        write(os.path.join(top, 'bin', 'busybox'), f.read(), 0o755)
    write(os.path.join(top, 'etc', 'os-version'), b'%d\n' % version)
    init = init or (b'#!/bin/sh\necho "hostos: version %d up"\n'
                    b'/bin/busybox poweroff -f\n' % version)
    write(os.path.join(top, 'sbin', 'init'), init, 0o755)
    # A "library" that changes a little from version to version, in a
    # versioned directory (matched across the rename).
    lib = b''.join(b'symbol_%06d\0' % i for i in range(20000))
    write(os.path.join(top, 'usr/lib/os-%d.0' % version, 'libos.so'),
          lib + b'release %d\0' % version)
    secret = os.path.join(top, 'etc', 'secret')
    write(secret, b'key\n', 0o600)
    os.chown(secret, 1000, 1000)
    os.setxattr(secret, 'user.label', b'host-secret')
    for name in ('vmlinuz', 'initrd.img') if boot_dir else ():
        with open(os.path.join(boot_dir, name), 'rb') as f:
            write(os.path.join(top, 'boot', name), f.read())
    for name, data in (extra or {}).items():
        write(os.path.join(top, name), data)
    return top


class HostOSTestCase(testtools.TestCase):
    """Temporary directory, key pair, content server, CLI runners."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.content = os.path.join(self.dir, 'content')
        os.makedirs(self.content)
        self.root = os.path.join(self.dir, 'root')
        self.key = os.path.join(self.dir, 'key')
        self.image('keygen', '--key', self.key)
        self.server = httpd.ContentServer(self.content)
        self.addCleanup(self.server.stop)

    def _run(self, main, args, check=True):
        env = dict(os.environ, PYTHONPATH=REPO)
        proc = subprocess.run([sys.executable, '-c', _MAIN % main] +
                              list(args), capture_output=True, text=True,
                              env=env, cwd=REPO)
        if check and proc.returncode != 0:
            self.fail('%s %s failed: %s' % (main, args, proc.stderr))
        return proc

    def image(self, *args, check=True):
        return self._run('image_main', args, check)

    def update_cmd(self, *args, pubkey=None, root=None):
        return [sys.executable, '-c', _MAIN % 'update_main',
                '--root', root or self.root, '--url', self.server.url,
                '--pubkey', pubkey or self.key + '.pub'] + list(args)

    def update(self, *args, check=True, pubkey=None, root=None):
        cmd = self.update_cmd(*args, pubkey=pubkey, root=root)
        return self._run('update_main', cmd[3:], check)

    def publish(self, version, tree=None, delta_from=None, **kw):
        tree = tree or small_os(os.path.join(self.dir, 'tree%d' % version),
                                version, **kw)
        self.image('bake', '--version', str(version), '--rootfs', tree,
                   '--content', self.content, '--key', self.key)
        if delta_from:
            self.image('delta', '--content', self.content, '--from',
                       str(delta_from), '--to', str(version), '--key',
                       self.key, '--workers', '2')
        return tree

    def boot_once(self, root=None):
        """What the boot initramfs does (boot.choose) on this root."""
        root = root or self.root
        version, state = boot.choose(boot.read(root))
        boot.write(root, state)
        return version

    def assert_snapshot_is(self, version, root=None):
        """The snapshot of ``version`` is exactly its manifest."""
        root = root or self.root
        with open(os.path.join(root, 'manifests', '%d.json' % version),
                  'rb') as f:
            wanted = manifest.parse_manifest(f.read())
        self.assertEqual(version, wanted.version)
        self.assertEqual([], stage.verify(stage.snapshot_dir(root, version),
                                          wanted))

    def state(self, root=None):
        return boot.read(root or self.root)


def text_detail(text):
    """A testtools detail holding ``text``."""
    from testtools import content
    return content.text_content(text)
