"""tools/devstack_check: local.conf, repositories, the machine's commands
(pure functions; the real run is tools/devstack-check)."""

import os

import testtools

from tools.devstack_check import localconf
from tools.devstack_check import machine
from tools.devstack_check import repos
from tools.devstack_check import settings


def read(path):
    with open(path) as f:
        return f.read()


SAMPLE = read(settings.SAMPLE_LOCAL_CONF)
ZUUL = read(settings.ZUUL_YAML)


class TestLocalConf(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.text = localconf.build(SAMPLE, ZUUL, settings.ZUUL_JOB,
                                    '/opt/git')

    def test_plugins_come_from_the_local_repositories(self):
        self.assertIn('enable_plugin nova-clear '
                      'file:///opt/git/x/nova-clear.git\n', self.text)
        self.assertIn('enable_plugin neutron '
                      'file:///opt/git/openstack/neutron.git\n', self.text)
        self.assertNotIn('https://opendev.org', self.text)

    def test_forced_settings_each_with_a_reason_in_localrc(self):
        localrc = self.text.split('[[local|localrc]]\n', 1)[1]
        localrc = localrc.split('[[', 1)[0]
        self.assertIn('GIT_BASE=file:///opt/git\n', localrc)
        self.assertIn('TEMPEST_VENV_UPPER_CONSTRAINTS=/opt/stack/'
                      'requirements/upper-constraints.txt\n', localrc)
        for setting, why in localconf.FORCED:
            line = setting.format(git_base='/opt/git', stack_home='/opt/stack')
            self.assertIn('# %s\n%s\n' % (why, line), localrc)
        # the sample's own settings stay
        self.assertIn('VIRT_DRIVER=libvirt\n', localrc)
        self.assertIn('Q_AGENT=macvtap\n', localrc)

    def test_the_zuul_jobs_tempest_settings(self):
        tail = self.text.split('[[test-config|$TEMPEST_CONFIG]]\n', 1)[1]
        self.assertIn('[validation]\nrun_validation = false\n', tail)
        self.assertIn('fixed_network_name = clear-net\n', tail)
        self.assertIn('create_isolated_networks = false\n', tail)

    def test_sample_without_the_plugin_is_refused(self):
        sample = SAMPLE.replace('enable_plugin nova-clear', '#')
        self.assertRaises(ValueError, localconf.build, sample, ZUUL,
                          settings.ZUUL_JOB, '/opt/git')

    def test_unknown_plugin_is_refused(self):
        sample = SAMPLE + '\nenable_plugin octavia https://x/octavia\n'
        self.assertRaises(ValueError, localconf.build, sample, ZUUL,
                          settings.ZUUL_JOB, '/opt/git')

    def test_tempest_selection_is_the_jobs(self):
        regex, concurrency = localconf.tempest_selection(ZUUL,
                                                         settings.ZUUL_JOB)
        self.assertTrue(regex.startswith('^tempest\\.api\\.compute'))
        self.assertEqual(2, concurrency)

    def test_differences_between_sample_and_job(self):
        diff = localconf.localrc_differences(SAMPLE, ZUUL, settings.ZUUL_JOB)
        # the job pins TCG, the sample probes KVM
        self.assertEqual(('auto', 'qemu'), diff['NOVA_CLEAR_VIRT_TYPE'])
        self.assertNotIn('Q_AGENT', diff)
        self.assertNotIn('NOVA_CLEAR_PROVIDER_VETH', diff)


class TestRepos(testtools.TestCase):

    def test_service_versions_are_the_pins(self):
        path = self.useFixture(
            __import__('fixtures').TempDir()).join('c.txt')
        with open(path, 'w') as f:
            f.write('nova==34.0.0\nkeystone===30.0.0\nglance==33.0.0\n'
                    'openstack-placement==16.0.0\nneutron==29.0.0;'
                    'python_version>"3"\n')
        got = repos.service_versions(path, tempest_version='47.0.0')
        self.assertEqual([('keystone', 'keystone', '30.0.0'),
                          ('glance', 'glance', '33.0.0'),
                          ('nova', 'nova', '34.0.0'),
                          ('placement', 'openstack-placement', '16.0.0'),
                          ('neutron', 'neutron', '29.0.0'),
                          ('tempest', 'tempest', '47.0.0')], got)

    def test_tempest_is_the_all_in_ones_pin(self):
        from tools.aio import tempest
        self.assertEqual(tempest.TEMPEST_VERSION, repos.aio_tempest_version())

    def test_a_service_not_pinned_is_an_error(self):
        path = self.useFixture(
            __import__('fixtures').TempDir()).join('c.txt')
        with open(path, 'w') as f:
            f.write('nova==34.0.0\n')
        self.assertRaises(ValueError, repos.service_versions, path, '47.0.0')

    def test_the_projects_constraints_pin_every_service(self):
        self.assertEqual(len(settings.SERVICE_REPOS),
                         len(repos.service_versions(settings.CONSTRAINTS,
                                                    '47.0.0')))

    def test_global_requirements_as_devstack_looks_them_up(self):
        text = repos.global_requirements('oslo.log==7.0.0\nPyMySQL==1.2\n'
                                         'glance_store===5.7.0\n'
                                         'x==1;python_version>"3"\n'
                                         '# comment\n')
        lines = dict(line.split('  #')[0].split('>=')
                     for line in text.splitlines())
        # a name and a version specifier each (devstack dies without one)
        self.assertEqual('7.0.0', lines['oslo.log'])
        self.assertEqual('1.2', lines['PyMySQL'])
        self.assertEqual('5.7.0', lines['glance-store'])
        self.assertEqual('1', lines['x'])
        for extra in repos.EXTRA_GLOBAL_REQUIREMENTS:
            self.assertIn(extra, lines)
        self.assertNotIn('==', text)

    def test_commit_tree_tags_the_release(self):
        tmp = self.useFixture(__import__('fixtures').TempDir()).path
        tree = os.path.join(tmp, 'tree')
        os.makedirs(os.path.join(tree, 'devstack'))
        with open(os.path.join(tree, 'devstack', 'plugin.sh'), 'w') as f:
            f.write('echo\n')
        with open(os.path.join(tree, '.gitignore'), 'w') as f:
            f.write('devstack\n')
        bare = os.path.join(tmp, 'x.git')
        repos.commit_tree(tree, bare, tag='1.2.3')
        import subprocess
        out = subprocess.run(['git', '-C', bare, 'ls-tree', '-r',
                              '--name-only', 'master'], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        # ignored files of the sdist are in the tree too
        self.assertIn('devstack/plugin.sh', out.split())
        tag = subprocess.run(['git', '-C', bare, 'describe', '--tags',
                              'master'], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.strip()
        self.assertEqual('1.2.3', tag)

    def test_os_test_images_stand_in_generates_an_empty_manifest(self):
        # what devstack's lib/tempest does with it: clone master, run the
        # generate env's commands in the tree, read images/manifest.yaml
        import configparser
        import subprocess
        import yaml
        tmp = self.useFixture(__import__('fixtures').TempDir()).path
        bare = repos.make_os_test_images(tmp, tmp)
        clone = os.path.join(tmp, 'clone')
        subprocess.run(['git', 'clone', '-q', '-b', 'master', bare, clone],
                       check=True)
        tox = configparser.ConfigParser()
        tox.read(os.path.join(clone, 'tox.ini'))
        self.assertIn('generate', tox['tox']['envlist'])
        subprocess.run(tox['testenv']['commands'].split(), cwd=clone,
                       check=True)
        with open(os.path.join(clone, 'images', 'manifest.yaml')) as f:
            self.assertEqual({'images': []}, yaml.safe_load(f))


class TestMachine(testtools.TestCase):

    def test_network_is_a_namespace_with_nat(self):
        cmds = machine.network_commands()
        self.assertEqual(['ip', 'netns', 'add', settings.NETNS], cmds[0])
        flat = [' '.join(c) for c in cmds]
        self.assertIn('ip -n %s route add default via %s'
                      % (settings.NETNS, settings.HOST_ADDR), flat)
        self.assertTrue(any('MASQUERADE' in c for c in flat))
        # down removes exactly the rules up adds
        up = [r[3:] for r in machine.nat_rules('-A')]
        down = [r[3:] for r in machine.nat_rules('-D')]
        self.assertEqual(up, down)

    def test_boot_mounts_its_own_run_and_proc_then_chroots(self):
        script = machine.boot_script()
        self.assertIn('mount -t tmpfs -o mode=755 run %s/run'
                      % settings.ROOT, script)
        self.assertIn('mount -t proc proc %s/proc' % settings.ROOT, script)
        self.assertTrue(script.endswith('exec chroot %s /usr/bin/python3 %s'
                                        % (settings.ROOT, machine.INIT)))
        self.assertLess(script.index('make-rprivate'),
                        script.index('--rbind /dev'))
        # the root is a mount point before anything is mounted on it
        self.assertLess(script.index('mount --bind %s %s' % (
            settings.ROOT, settings.ROOT)), script.index('--rbind /dev'))

    def test_enter_needs_a_running_machine(self):
        self.patch(machine, 'running_pid', lambda: None)
        self.assertRaises(machine.Failure, machine.enter_command, 'true')

    def test_enter_as_the_stack_user(self):
        self.patch(machine, 'running_pid', lambda: 4242)
        argv = machine.enter_command('./stack.sh', user='stack',
                                     cwd='/opt/stack/devstack')
        self.assertEqual(['nsenter', '-t', '4242'], argv[:3])
        self.assertIn('-r', argv)
        self.assertEqual(['su', '-', 'stack', '-s', '/bin/bash', '-c',
                          'cd /opt/stack/devstack && ./stack.sh'], argv[-7:])
