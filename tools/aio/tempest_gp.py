"""Nova's general-purpose cloud, feature by feature, judged by tempest.

Nova defines a general-purpose cloud in ``doc/source/user/
feature-matrix-gp.ini``: 15 operations, each proven by named tempest tests
(their idempotent ids, below as nova lists them).  ``tools/allinone tempest
--general-purpose`` runs exactly those tests against the all-in-one --
microvm servers, and the q35 (PCI) variant for the one feature that
hot-plugs a port -- and prints a verdict per feature:

* passed: every id ran and passed (where an id names tests in several
  classes, at least one passed and none failed);
* passed, partly: what ran passed, some ids skipped (reasons printed);
* failed: a test failed;
* skipped: nothing ran (reasons printed).

It exits 0 when no test failed and every test passed but those
EXPECTED_ABSENT names (with the reason they cannot pass here).  ``--smoke``
(what CI runs) is this with tempest.SMOKE added to the microvm run.
"""

import json
import os

from tools.aio import settings

# (operation, title, idempotent ids) from nova's feature-matrix-gp.ini
FEATURES = (
    ('create-delete-server', 'Create Server and Delete Server',
     ('9a438d88-10c6-4bcd-8b5b-5b6e25e1346f',
      '585e934c-448e-43c4-acbf-d06a9b899997')),
    ('snapshot-server', 'Snapshot Server',
     ('aaacd1d0-55a2-4ce8-818a-b5439df8adc9',)),
    ('power-ops', 'Server power ops',
     ('2cb1baf6-ac8d-4429-bf0d-ba8a0ba53e32',
      'af8eafd4-38a7-4a4b-bdbc-75145a580560')),
    ('rebuild-server', 'Rebuild Server',
     ('aaa6cdf3-55a7-461a-add9-1c8596b9a07c',)),
    ('resize-server', 'Resize Server',
     ('1499262a-9328-4eda-9068-db1ac57498d2',)),
    ('server-volume-ops', 'Volume Operations',
     ('fff42874-7db5-4487-a8e1-ddda5fb5288d',)),
    ('server-bdm', 'Custom disk configurations on boot',
     ('557cd2c2-4eb8-4dce-98be-f86765ff311b',
      '36c34c67-7b54-4b59-b188-02a2f458a63b')),
    ('server-neutron', 'Custom neutron configurations on boot',
     ('2f3a0127-95c7-4977-92d2-bc5aec602fb4',)),
    ('server-pause', 'Pause a Server',
     ('bd61a9fd-062f-4670-972b-2d6c3e3b9e73',)),
    ('server-suspend', 'Suspend a Server',
     ('0d8ee21e-b749-462d-83da-b85b41c86c7f',)),
    ('server-consoleoutput', 'Server console output',
     ('4b8867e6-fffa-4d54-b1d1-6fdda57be2f3',)),
    ('server-rescue', 'Server Rescue',
     ('fd032140-714c-42e4-a8fd-adcd8df06be6',
      '70cdb8a1-89f8-437d-9448-8844fd82bf46')),
    ('server-configdrive', 'Server Config Drive',
     ('7fff3fb3-91d8-4fd0-bd7d-0204f1f180ba',)),
    ('server-changepassword', 'Server Change Password',
     ('6158df09-4b82-4ab3-af6d-29cf36af858d',)),
    ('server-shelve', 'Server Shelve and Unshelve',
     ('1164e700-0af0-4a4c-8792-35909a88743c',
      'c1b6318c-b9da-490b-9c67-9339b627271f')),
)
# the tests that cannot pass here (by id), and why
CINDER = 'needs Cinder, which the all-in-one does not run yet'
EXPECTED_ABSENT = {
    'fff42874-7db5-4487-a8e1-ddda5fb5288d': CINDER,      # volume ops
    '557cd2c2-4eb8-4dce-98be-f86765ff311b': CINDER,      # boot from volume
    '36c34c67-7b54-4b59-b188-02a2f458a63b': CINDER,
    'c1b6318c-b9da-490b-9c67-9339b627271f': CINDER,      # volume-backed
    # change password
    '6158df09-4b82-4ab3-af6d-29cf36af858d': 'experimental: the guest has '
                                            'no agent that sets a password',
}
# features whose tests need the q35 (PCI) variant: microvm has no hot-plug
Q35_FEATURES = ('server-neutron',)
RESULTS = os.path.join(settings.AIO_HOME, 'tempest', 'gp-results.json')


def regex(machine_type):
    """tempest's --regex for the features run on ``machine_type``."""
    ids = [i for op, _t, ids in FEATURES
           if (op in Q35_FEATURES) == (machine_type == 'q35') for i in ids]
    return r'\bid-(%s)\b' % '|'.join(ids)


def _tests_of(uuid, names):
    return [n for n in names if 'id-' + uuid in n]


def verdict(ids, passed, failed, skipped):
    """(verdict, details) of one feature; ``passed`` and ``failed`` are test
    names, ``skipped`` {test name: reason}."""
    ok, skip_reasons, failures = [], {}, []
    for uuid in ids:
        f = _tests_of(uuid, failed)
        p = _tests_of(uuid, passed)
        s = _tests_of(uuid, skipped)
        if f:
            failures += f
        elif p:
            ok.append(uuid)
        else:
            skip_reasons[uuid] = sorted({skipped[n] for n in s}) or \
                ['did not run']
    if failures:
        return 'failed', failures
    if len(ok) == len(ids):
        return 'passed', []
    reasons = ['%s: %s' % (u, '; '.join(r)) for u, r in skip_reasons.items()]
    return ('passed, partly' if ok else 'skipped'), reasons


def judge(summaries):
    """Per feature (operation, title, verdict, details) from the summaries
    of the runs (tempest.run's, with 'skipped_tests')."""
    passed, failed, skipped = [], [], {}
    for s in summaries:
        passed += s['passed']
        failed += s['failed']
        skipped.update(s.get('skipped_tests', {}))
    return [(op, title) + verdict(ids, passed, failed, skipped)
            for op, title, ids in FEATURES]


def good(verdicts):
    """No failure, and every test passed but those EXPECTED_ABSENT names
    (a 'passed, partly' or 'skipped' verdict's details name its ids)."""
    for _op, _title, result, details in verdicts:
        if result == 'failed' or result != 'passed' and any(
                d.split(':', 1)[0] not in EXPECTED_ABSENT for d in details):
            return False
    return True


def report(verdicts):
    n = sum(1 for v in verdicts if v[2] == 'passed')
    part = sum(1 for v in verdicts if v[2] == 'passed, partly')
    print("nova's general-purpose features (feature-matrix-gp.ini), by "
          'tempest:')
    for op, title, result, details in verdicts:
        print('  %-22s %-16s %s' % (op, result, title))
        for d in details:
            uuid = d.split(':', 1)[0]
            why = EXPECTED_ABSENT.get(uuid)
            print('      %s%s' % (d, ' -- %s' % why if why else ''))
    print('%d of %d features passed, %d in part (their other tests: '
          'below)' % (n, len(verdicts), part) if part else
          '%d of %d features passed' % (n, len(verdicts)))


def run(concurrency=2, extra=None):
    """Both runs (the microvm one also running the tests ``extra``
    matches), the verdicts printed and kept in RESULTS, then the counts of
    both runs; True when :func:`good`."""
    from tools.aio import tempest
    summaries = []
    for mt in ('microvm', 'q35'):
        rx = regex(mt)
        if extra and mt == 'microvm':
            rx = '(%s)|(%s)' % (rx, extra)
        summaries.append(tempest.run(rx, concurrency=concurrency,
                                     machine_type=mt))
    verdicts = judge(summaries)
    with open(RESULTS, 'w') as f:
        json.dump([dict(zip(('operation', 'title', 'verdict', 'details'),
                            v)) for v in verdicts], f, indent=1)
    report(verdicts)
    print('verdicts: %s' % RESULTS)
    print('both runs: %d passed, %d failed, %d skipped' % (
        sum(len(s['passed']) for s in summaries),
        sum(len(s['failed']) for s in summaries),
        sum(sum(s['skipped'].values()) for s in summaries)))
    return good(verdicts)
