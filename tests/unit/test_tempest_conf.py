"""tempest's feature flags, derived from the driver (deploy/tempest_conf)."""

import os
import subprocess
import sys
import tempfile

import fixtures
import testtools

from nova.virt import driver as nova_driver

from nova_clear.deploy import tempest_conf
from nova_clear import driver as clear_driver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class Minimal(nova_driver.ComputeDriver):
    """Implements only what booting needs."""
    capabilities = dict(nova_driver.ComputeDriver.capabilities,
                        supports_attach_interface=True)

    def spawn(self, *a, **kw):
        pass

    def get_console_output(self, *a, **kw):
        pass


class WithInterfaces(Minimal):
    def attach_interface(self, *a, **kw):
        pass

    def detach_interface(self, *a, **kw):
        pass


class TestFlags(testtools.TestCase):

    def test_flags_follow_the_implemented_operations(self):
        flags = tempest_conf.compute_features(Minimal)
        self.assertTrue(flags['console_output'])
        self.assertTrue(flags['config_drive'])
        for flag in ('snapshot', 'rescue', 'pause', 'suspend', 'shelve',
                     'resize', 'interface_attach', 'vnc_console',
                     'change_password', 'live_migration'):
            self.assertFalse(flags[flag], flag)

    def test_capability_and_operation_both_needed(self):
        self.assertTrue(tempest_conf.compute_features(
            WithInterfaces, machine_type='q35')['interface_attach'])
        # microvm servers do not hot-plug
        self.assertFalse(tempest_conf.compute_features(
            WithInterfaces)['interface_attach'])

        class NoCapability(WithInterfaces):
            capabilities = dict(WithInterfaces.capabilities,
                                supports_attach_interface=False)
        self.assertFalse(tempest_conf.compute_features(
            NoCapability, machine_type='q35')['interface_attach'])

    def test_serial_console_needs_the_proxy(self):
        class Serial(Minimal):
            def get_serial_console(self, *a, **kw):
                pass
        self.assertFalse(tempest_conf.compute_features(
            Serial)['serial_console'])
        self.assertTrue(tempest_conf.compute_features(
            Serial, serial_console=True)['serial_console'])
        self.assertFalse(tempest_conf.compute_features(
            Minimal, serial_console=True)['serial_console'])

    def test_moves_between_hosts_need_two(self):
        flags = tempest_conf.compute_features(clear_driver.ClearDriver)
        self.assertFalse(flags['cold_migration'])
        self.assertFalse(flags['shelve_migrate'])
        if flags['resize']:
            two = tempest_conf.compute_features(clear_driver.ClearDriver,
                                                compute_nodes=2)
            self.assertTrue(two['cold_migration'])

    def test_clear_driver(self):
        flags = tempest_conf.compute_features()
        caps = clear_driver.ClearDriver.capabilities
        for flag in ('snapshot', 'rescue', 'pause', 'suspend', 'shelve',
                     'console_output'):
            self.assertTrue(flags[flag], flag)
        # the q35 variant hot-plugs, microvm does not
        self.assertFalse(flags['interface_attach'])
        self.assertEqual(caps['supports_attach_interface'],
                         tempest_conf.compute_features(
                             machine_type='q35')['interface_attach'])
        self.assertFalse(flags['change_password'])
        self.assertFalse(flags['vnc_console'])

    def test_stable_rescue_claims_every_bus_tempest_tests(self):
        from nova_clear import rescue
        self.assertEqual(
            {'virtio', 'scsi', 'usb'} <= set(rescue.STABLE_BUSES),
            tempest_conf.compute_features()['stable_rescue'])
        self.useFixture(fixtures.MockPatchObject(
            rescue, 'STABLE_BUSES', ('virtio', 'scsi', 'usb')))
        self.assertTrue(tempest_conf.compute_features()['stable_rescue'])

    def test_cli_lines_for_iniset(self):
        out = subprocess.run(
            [sys.executable, '-c',
             'from nova_clear.deploy import tempest_conf; '
             'tempest_conf.main(["--serial-console"])'],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout
        lines = [line.split() for line in out.splitlines()]
        self.assertTrue(lines)
        for section, option, value in lines:
            self.assertEqual('compute-feature-enabled', section)
            self.assertIn(value, ('True', 'False'))
        self.assertEqual(sorted(o for _, o, _ in lines),
                         [o for _, o, _ in lines])


class TestDevstackTestConfig(testtools.TestCase):
    """The plugin's test-config phase writes the derived flags."""

    def test_flags_written_with_iniset(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(subprocess.run, ['rm', '-rf', tmp])
        bindir = os.path.join(tmp, 'bin')
        os.makedirs(bindir)
        flags = os.path.join(bindir, 'nova-clear-tempest-flags')
        with open(flags, 'w') as f:
            # this tree's nova_clear, as the test imports it
            f.write('#!%s\nimport sys\nsys.path.insert(0, %r)\n'
                    'from nova_clear.deploy import tempest_conf\n'
                    'sys.exit(tempest_conf.main())\n'
                    % (sys.executable, ROOT))
        os.chmod(flags, 0o755)
        conf = os.path.join(tmp, 'tempest.conf')
        script = '''
set -eu
define_plugin() { :; }
DEST=%(tmp)s
source %(devstack)s/override-defaults
source %(devstack)s/settings
source %(devstack)s/plugin.sh
NOVA_CLEAR_BIN_DIR=%(bin)s
is_service_enabled() { [[ $1 == n-sproxy ]]; }
nova_clear_openstack() { echo "id-of-${!#}"; }
iniset() { echo "$2 $3 $4" >> "$1"; }
configure_tempest_for_nova_clear %(conf)s
''' % {'tmp': tmp, 'devstack': os.path.join(ROOT, 'devstack'),
            'bin': bindir, 'conf': conf}
        proc = subprocess.run(['bash', '-c', script], capture_output=True,
                              text=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        with open(conf) as f:
            written = f.read().splitlines()
        expected = tempest_conf.compute_features(serial_console=True)
        for flag, value in expected.items():
            self.assertIn('compute-feature-enabled %s %s' % (flag, value),
                          written)
        self.assertIn('compute flavor_ref id-of-clear.tiny', written)
