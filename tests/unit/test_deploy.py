"""nova-clear-configure and the devstack plugin's shell."""

import configparser
import os
import shutil
import subprocess
import sys
import tempfile

import testtools

from nova_clear.deploy import nova_conf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEVSTACK = os.path.join(ROOT, 'devstack')
SAMPLE = '''[DEFAULT]
# devstack wrote this
debug = True
compute_driver = libvirt.LibvirtDriver
transport_url = rabbit://stackrabbit:secret@10.0.0.1:5672/

[libvirt]
virt_type = qemu

[clear]
virt_type = kvm
virt_type = kvm

[placement]
auth_type = password
'''


def read(path):
    with open(path) as f:
        return f.read()


def parse(path):
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read(path)
    return cp


class TestNovaConf(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, 'nova.conf')
        with open(self.path, 'w') as f:
            f.write(SAMPLE)
        os.chmod(self.path, 0o640)

    def test_configure_keeps_the_rest(self):
        nova_conf.configure(self.path, {'virt_type': 'qemu',
                                        'assets_path': '/a',
                                        'kvm_probe_timeout': 5},
                            {'nova_sys_admin': {'helper_command': '/h'}})
        text = read(self.path)
        self.assertIn('# devstack wrote this', text)
        self.assertIn('transport_url = rabbit://stackrabbit:secret@', text)
        cp = parse(self.path)
        self.assertEqual('clear.ClearDriver', cp['DEFAULT']['compute_driver'])
        self.assertEqual('qemu', cp['libvirt']['virt_type'])
        self.assertEqual('qemu', cp['clear']['virt_type'])
        self.assertEqual('/a', cp['clear']['assets_path'])
        self.assertEqual('5', cp['clear']['kvm_probe_timeout'])
        self.assertEqual('/h', cp['nova_sys_admin']['helper_command'])
        clear = text.split('[clear]\n', 1)[1].split('\n[', 1)[0]
        self.assertEqual(1, clear.count('virt_type'), clear)
        self.assertEqual(0o640, os.stat(self.path).st_mode & 0o777)

    def test_keeps_owner_and_group(self):
        # root edits the root:nova 0640 file the unprivileged nova-compute
        # reads: it must stay root:nova (was root:root, unreadable by nova)
        if os.geteuid() != 0:
            self.skipTest('needs root to give the file another owner')
        os.chown(self.path, 4242, 4343)
        nova_conf.configure(self.path, {'virt_type': 'qemu'})
        st = os.stat(self.path)
        self.assertEqual((4242, 4343, 0o640),
                         (st.st_uid, st.st_gid, st.st_mode & 0o777))

    def test_owner_that_cannot_be_kept_writes_nothing(self):
        self.patch(os, 'chown', self._eperm)
        self.patch(os, 'geteuid', lambda: 4242)
        self.assertRaises(nova_conf.ConfigError, nova_conf.configure,
                          self.path, {'virt_type': 'qemu'})
        self.assertEqual(SAMPLE, read(self.path))
        self.assertEqual(['nova.conf'], os.listdir(self.dir))

    @staticmethod
    def _eperm(*args, **kwargs):
        raise PermissionError(1, 'Operation not permitted')

    def test_idempotent(self):
        nova_conf.configure(self.path, {'virt_type': 'auto'})
        once = read(self.path)
        nova_conf.configure(self.path, {'virt_type': 'auto'})
        self.assertEqual(once, read(self.path))

    def test_new_file(self):
        path = os.path.join(self.dir, 'new.conf')
        nova_conf.configure(path, {'machine_type': 'q35'})
        cp = parse(path)
        self.assertEqual('q35', cp['clear']['machine_type'])

    def test_bad_values_write_nothing(self):
        for options in ({'virt_type': 'xen'}, {'kvm_probe_timeout': 0},
                        {'kvm_probe_timeout': 'x'}, {'no_such': 1}):
            self.assertRaises(nova_conf.ConfigError, nova_conf.configure,
                              self.path, options)
            self.assertEqual(SAMPLE, read(self.path))
        self.assertEqual(['nova.conf'], os.listdir(self.dir))

    def test_cli(self):
        rc = nova_conf.main(['--config-file', self.path, '--virt-type',
                             'qemu', '--clear', 'tcg_tb_cache_mb=16',
                             '--set', 'compute.max_concurrent_builds=4'])
        self.assertEqual(0, rc)
        cp = parse(self.path)
        self.assertEqual('16', cp['clear']['tcg_tb_cache_mb'])
        self.assertEqual('4', cp['compute']['max_concurrent_builds'])

    def test_cli_bad_input(self):
        self.assertEqual(2, nova_conf.main(['--config-file', self.path,
                                            '--set', 'nodot=1']))
        self.assertEqual(2, nova_conf.main(['--config-file', self.path,
                                            '--clear', 'machine_type=pc']))
        self.assertEqual(SAMPLE, read(self.path))


class TestDevstackPlugin(testtools.TestCase):

    FILES = ('plugin.sh', 'settings', 'override-defaults')

    def test_bash_syntax(self):
        for name in self.FILES:
            proc = subprocess.run(['bash', '-n', os.path.join(DEVSTACK,
                                                              name)],
                                  capture_output=True, text=True)
            self.assertEqual(0, proc.returncode, proc.stderr)

    def test_shellcheck(self):
        shellcheck = shutil.which('shellcheck')
        if not shellcheck:
            self.skipTest('shellcheck is not installed (Debian package '
                          'shellcheck, in bindep.txt)')
        proc = subprocess.run(
            [shellcheck, '-s', 'bash'] +
            [os.path.join(DEVSTACK, n) for n in self.FILES] +
            [os.path.join(ROOT, 'tools', 'allinone')],
            capture_output=True, text=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)

    def test_post_config_writes_the_driver(self):
        tmp = self._tmpdir()
        conf = os.path.join(tmp, 'nova.conf')
        with open(conf, 'w') as f:
            f.write(SAMPLE)
        script = '''
set -eu
define_plugin() { :; }
is_service_enabled() { return 0; }
echo_summary() { echo "summary: $*"; }
DEST=%(tmp)s
source %(devstack)s/override-defaults
source %(devstack)s/settings
NOVA_CONF=%(conf)s
NOVA_CLEAR_VIRT_TYPE=qemu
NOVA_CLEAR_BIN_DIR=%(bin)s
source %(devstack)s/plugin.sh stack post-config
echo "VIRT_DRIVER=$VIRT_DRIVER"
''' % {'tmp': tmp, 'devstack': DEVSTACK, 'conf': conf,
            'bin': os.path.dirname(sys.executable)}
        proc = subprocess.run(['bash', '-c', script], capture_output=True,
                              text=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('summary: nova-clear: compute_driver', proc.stdout)
        self.assertIn('VIRT_DRIVER=libvirt', proc.stdout)
        cp = parse(conf)
        self.assertEqual('clear.ClearDriver', cp['DEFAULT']['compute_driver'])
        self.assertEqual('qemu', cp['clear']['virt_type'])
        self.assertEqual('20', cp['clear']['kvm_probe_timeout'])
        self.assertEqual('/var/lib/nova-clear/guest',
                         cp['clear']['assets_path'])
        self.assertIn('# devstack wrote this', read(conf))

    def test_sourcing_without_a_phase_does_nothing(self):
        script = ('is_service_enabled() { echo called; }; '
                  'source %s/plugin.sh; type configure_nova_clear >/dev/null'
                  % DEVSTACK)
        proc = subprocess.run(['bash', '-c', script], capture_output=True,
                              text=True)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertNotIn('called', proc.stdout)

    def _tmpdir(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        return tmp
