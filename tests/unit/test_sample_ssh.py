"""nova_clear.sample_ssh: the tree tempest logs in to, built from this
host's binaries (no daemons; the scripts run under the host's busybox)."""

import json
import os
import subprocess

import fixtures
import testtools

from nova_clear.buildtools import debian
from nova_clear import sample_ssh

LDD = '''\tlinux-vdso.so.1 (0x00007ffd1b5f2000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f5a1c3e4000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5a1c202000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5a1c42a000)
'''


class TestSharedLibraries(testtools.TestCase):

    def test_parsed_from_ldd(self):
        fake = subprocess.CompletedProcess([], 0, stdout=LDD, stderr='')
        self.useFixture(fixtures.MockPatch('subprocess.run',
                                           return_value=fake))
        self.assertEqual(['/lib/x86_64-linux-gnu/libz.so.1',
                          '/lib/x86_64-linux-gnu/libc.so.6',
                          '/lib64/ld-linux-x86-64.so.2'],
                         sample_ssh.shared_libraries('/usr/sbin/x'))


class TestKeys(testtools.TestCase):

    def test_keys_from_meta_data_json(self):
        rsa = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7+/x='
        ed = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPW6Vu8c'
        ecdsa = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAA'
        md = json.dumps({'public_keys': {'a': rsa + ' tempest@x',
                                         'b': ed + '\n', 'c': ecdsa},
                         'keys': [{'data': rsa + ' tempest@x\n'}],
                         'meta': {'note': 'ssh-rsa is not a key',
                                  'other': 'ssh-rsa AAAAB3NzaC1yc2Ebad'}})
        self.assertEqual(sorted([rsa, ed, ecdsa]),
                         self.keys(md).split('\n')[:-1])
        # a key only in the metadata is no key
        md = json.dumps({'public_keys': {}, 'meta': {'k': rsa}})
        self.assertEqual('', self.keys(md))

    def keys(self, meta_data):
        """What the init's function makes of ``meta_data``, read from a
        file as the init reads it (stdin is not the file)."""
        path = self.useFixture(fixtures.TempDir()).join('meta_data.json')
        with open(path, 'w') as f:
            f.write(meta_data)
        self.assertIn(sample_ssh.KEYS_FUNCTION.encode(), sample_ssh.SSH_INIT)
        self.assertIn(b'public_keys < /run/config-drive/openstack/latest/'
                      b'meta_data.json', sample_ssh.SSH_INIT)
        return subprocess.run(
            [debian.BUSYBOX, 'sh', '-c',
             '%s\npublic_keys < "$1"' % sample_ssh.KEYS_FUNCTION, 'sh',
             path], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, check=True, timeout=10).stdout


class TestSudo(testtools.TestCase):

    def test_runs_the_command_without_its_options(self):
        path = self.useFixture(fixtures.TempDir()).join('sudo')
        with open(path, 'wb') as f:
            f.write(sample_ssh.SUDO)
        for args in (['echo', 'a b'], ['-n', 'echo', 'a b'],
                     ['-u', '--', 'echo', 'a b']):
            out = subprocess.run([debian.BUSYBOX, 'sh', path] + args,
                                 capture_output=True, text=True,
                                 check=True).stdout
            self.assertEqual('a b\n', out, args)


class TestTree(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(sample_ssh.DROPBEAR):
            self.skipTest('dropbear-bin is not installed (bindep.txt)')
        self.tree = self.useFixture(fixtures.TempDir()).join('tree')
        sample_ssh.ssh_tree(self.tree)

    def path(self, rel):
        return os.path.join(self.tree, rel)

    def test_binaries_with_their_libraries(self):
        for _src, rel in sample_ssh.ELF_BINARIES:
            self.assertTrue(os.access(self.path(rel), os.X_OK), rel)
        for lib in sample_ssh.shared_libraries(sample_ssh.DROPBEAR):
            self.assertTrue(os.path.isfile(self.path(lib.lstrip('/'))), lib)

    def test_busybox_applets_but_util_linux_ones(self):
        self.assertEqual('busybox', os.readlink(self.path('bin/ip')))
        self.assertEqual('busybox', os.readlink(self.path('bin/mount')))
        for name in sample_ssh.NOT_FROM_BUSYBOX:
            self.assertFalse(os.path.lexists(self.path('bin/' + name)), name)
        self.assertTrue(os.access(self.path('usr/bin/sudo'), os.X_OK))

    def test_root_logs_in_with_a_key_only(self):
        with open(self.path('etc/passwd')) as f:
            self.assertEqual('root:*:0:0:root:/root:/bin/sh\n', f.read())
        with open(self.path('etc/shells')) as f:
            self.assertEqual('/bin/sh\n', f.read())
        self.assertEqual(0o700, os.stat(self.path('root')).st_mode & 0o777)
        self.assertTrue(os.path.isdir(self.path('etc/dropbear')))

    def test_missing_dropbear_is_named(self):
        self.useFixture(fixtures.MockPatchObject(sample_ssh, 'DROPBEAR',
                                                 '/nonexistent/dropbear'))
        err = self.assertRaises(FileNotFoundError, sample_ssh.ssh_tree,
                                self.path('other'))
        self.assertIn('install dropbear-bin', str(err))
