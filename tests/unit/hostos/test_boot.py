"""Boot state: format, the initramfs's choice, mark-good, rollback."""

import os
import subprocess

import fixtures
import testtools

from nova_clear.hostos import boot
from nova_clear.hostos import errors

SHELL_LIB = os.path.join(os.path.dirname(boot.__file__), 'boot-state.sh')


class BootStateTest(testtools.TestCase):
    def test_format_round_trip(self):
        s = boot.BootState(current=3, previous=2, pending=4, tries=1,
                           booted=4, failed=0)
        self.assertEqual(s, boot.parse(boot.format_state(s)))

    def test_malformed(self):
        for text in ('current=x\n', 'nope=1\n', 'current\n', 'current=-1'):
            self.assertRaises(errors.BootStateError, boot.parse, text)

    def test_tries_then_rollback(self):
        s = boot.set_pending(boot.installed(1), 2, tries=2)
        booted = []
        for _ in range(4):
            version, s = boot.choose(s)
            booted.append(version)
        self.assertEqual([2, 2, 1, 1], booted)
        self.assertEqual((1, 0, 2), (s.current, s.pending, s.failed))

    def test_mark_good_after_boot(self):
        s = boot.set_pending(boot.installed(1), 2)
        _v, s = boot.choose(s)
        s = boot.mark_good(s)
        self.assertEqual((2, 1, 0), (s.current, s.previous, s.pending))
        self.assertEqual(s, boot.mark_good(s))

    def test_mark_good_refused_when_pending_not_booted(self):
        s = boot.set_pending(boot.installed(1), 2)
        self.assertEqual(s, boot.mark_good(s))
        s = boot.BootState(current=1, pending=3, booted=2)
        self.assertRaises(errors.BootStateError, boot.mark_good, s)

    def test_rollback(self):
        s = boot.set_pending(boot.installed(1), 2)
        self.assertEqual(boot.installed(1), boot.rollback(s))
        good = boot.BootState(current=2, previous=1, booted=2)
        self.assertEqual(1, boot.rollback(good).current)
        self.assertRaises(errors.BootStateError, boot.rollback,
                          boot.installed(1))

    def test_tries_below_one_refused(self):
        for tries in (0, -1, True):
            self.assertRaises(errors.BootStateError, boot.set_pending,
                              boot.installed(1), 2, tries)

    def test_downgrade_refused(self):
        self.assertRaises(errors.DowngradeError, boot.set_pending,
                          boot.installed(5), 4)

    def test_write_read_atomic(self):
        root = self.useFixture(fixtures.TempDir()).path
        self.assertEqual(boot.BootState(), boot.read(root))
        s = boot.BootState(current=7, booted=7)
        boot.write(root, s)
        self.assertEqual(s, boot.read(root))


class ShellParityTest(testtools.TestCase):
    """The initramfs's shell decides exactly like ``boot.choose``."""

    def setUp(self):
        super().setUp()
        self.state = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                  'state')

    def _shell_choose(self, text):
        with open(self.state, 'w') as f:
            f.write(text)
        proc = subprocess.run(
            ['/bin/busybox', 'sh', '-c',
             '. "$0" && choose_boot "$1" && echo "$version"', SHELL_LIB,
             self.state], capture_output=True, text=True)
        with open(self.state) as f:
            return proc.returncode, proc.stdout.strip(), f.read()

    def test_same_decisions(self):
        states = [boot.installed(1),
                  boot.BootState(current=1, pending=2, tries=3, booted=1),
                  boot.BootState(current=1, pending=2, tries=1, booted=2),
                  boot.BootState(current=1, previous=7, pending=2, tries=0,
                                 booted=2),
                  boot.BootState(current=5, previous=4, booted=5, failed=6)]
        for state in states:
            version, new = boot.choose_text(boot.format_state(state))
            self.assertEqual((version, new), boot.choose(state))
            code, out, text = self._shell_choose(boot.format_state(state))
            self.assertEqual((0, str(version)), (code, out), state)
            self.assertEqual(boot.format_state(new), text, state)

    def test_malformed_state_boots_current(self):
        """A damaged line never powers the host off while `current` is
        readable: the line is ignored, the pending version not tried."""
        good = 'current=1\nprevious=0\npending=2\ntries=3\nbooted=1\n'
        for text in (good + 'nope=1\n', good + 'failed=x\n',
                     'current=1\npending=-2\ntries=3\n',
                     'current=1\npending=2\ntries=\u00b2\n',
                     'pending=2\ntries=3\ncurrent=1\nbooted\n',
                     'current=1\npending=2\ntries=%s\n' % ('9' * 19),
                     'current=1\npending=2\ntries=3\n\x00garbage'):
            self.assertRaises(errors.BootStateError, boot.parse, text)
            version, new = boot.choose_text(text)
            self.assertEqual((1, 0, 0), (version, new.pending, new.tries))
            code, out, after = self._shell_choose(text)
            self.assertEqual((0, '1', boot.format_state(new)),
                             (code, out, after), text)

    def test_last_line_without_newline(self):
        text = 'current=1\npending=2\ntries=2'
        self.assertEqual(2, boot.choose_text(text)[0])
        self.assertEqual((0, '2'), self._shell_choose(text)[:2])

    def test_no_valid_current_changes_nothing(self):
        for text in ('current=x\n', '', 'pending=2\ntries=1\nnope=3\n'):
            self.assertRaises(errors.BootStateError, boot.choose_text, text)
            code, out, after = self._shell_choose(text)
            self.assertEqual((1, '', text), (code, out, after))
