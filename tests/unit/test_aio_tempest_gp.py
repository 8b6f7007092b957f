"""tools/aio/tempest_gp.py: nova's general-purpose features, their tests
and the verdicts (no tempest run)."""

import re

import fixtures

import testtools

from tools.aio import tempest_gp as gp

RESCUE = 'fd032140-714c-42e4-a8fd-adcd8df06be6'
RESCUE_REBUILD = '70cdb8a1-89f8-437d-9448-8844fd82bf46'
SHELVE = '1164e700-0af0-4a4c-8792-35909a88743c'
SHELVE_VOLUME = 'c1b6318c-b9da-490b-9c67-9339b627271f'


def name(cls, uuid):
    return 'tempest.api.compute.servers.%s.test_x[id-%s]' % (cls, uuid)


class TestFeatures(testtools.TestCase):

    def test_the_fifteen_of_nova(self):
        self.assertEqual(15, len(gp.FEATURES))
        for op, _title, ids in gp.FEATURES:
            for uuid in ids:
                self.assertRegex(uuid, r'^[0-9a-f]{8}(-[0-9a-f]{4}){3}-'
                                       r'[0-9a-f]{12}$')
        ops = {op for op, _t, _i in gp.FEATURES}
        ids = {u for _op, _t, i in gp.FEATURES for u in i}
        self.assertLessEqual(set(gp.EXPECTED_ABSENT), ids)
        self.assertLessEqual(set(gp.Q35_FEATURES), ops)

    def test_regex_splits_by_machine_type(self):
        microvm = re.compile(gp.regex('microvm'))
        q35 = re.compile(gp.regex('q35'))
        reassign = ('tempest.api.compute.servers.test_attach_interfaces.'
                    'AttachInterfacesTestJSON.test_reassign_port_between_'
                    'servers[id-2f3a0127-95c7-4977-92d2-bc5aec602fb4]')
        shelve = ('tempest.scenario.test_shelve_instance.TestShelveInstance.'
                  'test_shelve_instance[compute,id-%s,image,network,slow]'
                  % SHELVE)
        self.assertTrue(q35.search(reassign))
        self.assertFalse(microvm.search(reassign))
        self.assertTrue(microvm.search(shelve))
        self.assertFalse(q35.search(shelve))
        # an id is matched whole, not as a prefix of another test's id
        self.assertFalse(microvm.search('x[id-%sff]' % SHELVE))


class TestVerdict(testtools.TestCase):

    def test_passed(self):
        self.assertEqual(('passed', []), gp.verdict(
            (RESCUE, RESCUE_REBUILD),
            [name('A', RESCUE), name('B', RESCUE_REBUILD)], [], {}))

    def test_one_class_passed_another_skipped(self):
        # the id names tests in two classes: one passing is enough
        self.assertEqual(('passed', []), gp.verdict(
            (RESCUE,), [name('A', RESCUE)], [],
            {name('BootFromVolume', RESCUE): 'no cinder'}))

    def test_a_failure_fails_it(self):
        self.assertEqual(('failed', [name('B', RESCUE)]), gp.verdict(
            (RESCUE,), [name('A', RESCUE)], [name('B', RESCUE)], {}))

    def test_partly_and_skipped(self):
        v, details = gp.verdict((SHELVE, SHELVE_VOLUME), [name('A', SHELVE)],
                                [], {name('V', SHELVE_VOLUME): 'no cinder'})
        self.assertEqual('passed, partly', v)
        self.assertEqual(['%s: no cinder' % SHELVE_VOLUME], details)
        v, details = gp.verdict((SHELVE,), [], [], {})
        self.assertEqual(('skipped', ['%s: did not run' % SHELVE]),
                         (v, details))


class TestJudge(testtools.TestCase):

    def verdicts(self, skip=(), fail=()):
        """Every test passed but the ids ``skip`` (skipped) and ``fail``."""
        passed, failed, skipped = [], [], {}
        for _op, _t, ids in gp.FEATURES:
            for uuid in ids:
                if uuid in fail:
                    failed.append(name('X', uuid))
                elif uuid in skip:
                    skipped[name('X', uuid)] = 'not here'
                else:
                    passed.append(name('X', uuid))
        return gp.judge([{'passed': passed[:5], 'failed': failed,
                          'skipped_tests': skipped},
                         {'passed': passed[5:], 'failed': [],
                          'skipped_tests': {}}])

    def test_all_but_the_expected_is_good(self):
        v = self.verdicts(skip=tuple(gp.EXPECTED_ABSENT))
        self.assertTrue(gp.good(v))
        self.assertEqual(11, sum(1 for x in v if x[2] == 'passed'))
        # shelve: the image-backed test passed, the volume-backed skipped
        self.assertEqual(['server-shelve'], [x[0] for x in v
                                             if x[2] == 'passed, partly'])

    def test_an_unexpected_absence_or_failure_is_not(self):
        self.assertFalse(gp.good(self.verdicts(skip=(RESCUE,))))
        self.assertFalse(gp.good(self.verdicts(
            skip=tuple(gp.EXPECTED_ABSENT) + (SHELVE,))))
        self.assertFalse(gp.good(self.verdicts(fail=(RESCUE,))))
        # a failure of an expected-absent test counts too
        self.assertFalse(gp.good(self.verdicts(
            fail=('6158df09-4b82-4ab3-af6d-29cf36af858d',))))


class TestRun(testtools.TestCase):

    def test_two_runs_smoke_added_to_microvm_counts_summed(self):
        import contextlib
        import io
        from unittest import mock

        from tools.aio import tempest
        calls = []

        def fake_run(rx, concurrency, machine_type):
            calls.append((rx, machine_type))
            ids = [i for op, _t, ids in gp.FEATURES for i in ids
                   if i not in gp.EXPECTED_ABSENT and
                   re.search(gp.regex(machine_type), 'x[id-%s]' % i)]
            return {'passed': [name('X', i) for i in ids] + ['smoke.t'],
                    'failed': [], 'skipped': {'r': 2},
                    'skipped_tests': {}}
        out = io.StringIO()
        tmp = self.useFixture(fixtures.TempDir()).join('gp.json')
        with mock.patch.object(tempest, 'run', fake_run), \
                mock.patch.object(gp, 'RESULTS', tmp), \
                contextlib.redirect_stdout(out):
            self.assertTrue(gp.run(extra='^smoke'))
        self.assertEqual(['microvm', 'q35'], [mt for _r, mt in calls])
        self.assertEqual('(%s)|(^smoke)' % gp.regex('microvm'), calls[0][0])
        self.assertEqual(gp.regex('q35'), calls[1][0])
        # 19 microvm ids, 5 of them absent, + 1 smoke test; 1 q35 id + 1
        self.assertIn('both runs: 17 passed, 0 failed, 4 skipped',
                      out.getvalue())
        self.assertIn('11 of 15 features passed, 1 in part', out.getvalue())
