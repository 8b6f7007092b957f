"""Deltas: round trips, chunking, refusals, fallbacks, rename matching."""

import os
import random

import fixtures
import testtools
import zstandard

from nova_clear.hostos import delta
from nova_clear.hostos import errors


def _pair(size=200000, seed=1):
    rnd = random.Random(seed)
    words = [bytes(rnd.getrandbits(8) for _ in range(16)) for _ in range(64)]
    old = b''.join(rnd.choice(words) for _ in range(size // 16))
    new = bytearray(old)
    for _ in range(50):
        i = rnd.randrange(len(new))
        new[i:i + 4] = b'\x01\x02\x03\x04'
    new[1000:1000] = b'inserted' * 100
    return old, bytes(new)


class DeltaTest(testtools.TestCase):
    def test_round_trip_and_smaller(self):
        old, new = _pair()
        d = delta.make_delta(old, new)
        self.assertEqual(new, delta.apply_delta(old, d, len(new)))
        self.assertLess(len(d), len(new) // 20)

    def test_chunked_round_trip(self):
        old, new = _pair(300000)
        window = 64 * 1024
        self.assertGreater(len(delta._windows(len(old), len(new), window)),
                           4)
        d = delta.make_delta(old, new, window)
        self.assertEqual(new, delta.apply_delta(old, d, len(new)))

    def test_tampered_refused(self):
        old, new = _pair(50000)
        d = bytearray(delta.make_delta(old, new))
        for bad in (bytes(d[:-5]), b'BSDIFF40' + bytes(d[8:]), b''):
            self.assertRaises(errors.VerificationError, delta.apply_delta,
                              old, bad, len(new))
        self.assertRaises(errors.VerificationError, delta.apply_delta, old,
                          bytes(d), len(new) - 1)

    def test_rename_matching(self):
        old = ['lib/modules/6.1.0-55-cloud/a.ko', 'usr/lib/libx.so.1.2',
               'etc/a1', 'etc/a2', 'same']
        new = ['lib/modules/6.1.0-56-cloud/a.ko', 'usr/lib/libx.so.1.3',
               'etc/a3', 'same', 'brand-new']
        self.assertEqual(
            {'lib/modules/6.1.0-56-cloud/a.ko':
             'lib/modules/6.1.0-55-cloud/a.ko',
             'usr/lib/libx.so.1.3': 'usr/lib/libx.so.1.2'},
            delta.match_renames(old, new))

    def test_workers_bounded_by_ram(self):
        self.assertEqual(1, delta.workers_for(100 << 20, 1 << 30, cpus=8))
        self.assertEqual(8, delta.workers_for(1 << 20, 64 << 30, cpus=8))
        self.assertEqual(1, delta.workers_for(1 << 30, 1 << 20, cpus=8))


class ComputeAllTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        # Every job in a worker process, however small.
        self.useFixture(fixtures.MonkeyPatch(
            'nova_clear.hostos.delta.INLINE_MAX', 0))

    def _job(self, name, old, new):
        paths = []
        for suffix, data in (('old', old), ('new', new)):
            p = os.path.join(self.dir, '%s.%s' % (name, suffix))
            with open(p, 'wb') as f:
                f.write(data)
            paths.append(p)
        return delta.Job(target=name, new_path=paths[1],
                         source_path=paths[0])

    def test_best_payload_files(self):
        old, new = _pair(50000)
        job = self._job('best', old, new)
        out = os.path.join(self.dir, 'out')
        self.assertEqual(delta.DELTA, delta.best_payload(
            job.source_path, job.new_path, out, window=16384))
        with delta.FileView(job.source_path) as view, \
                open(out, 'rb') as f:
            self.assertEqual(new, delta.apply_delta(view, f.read(),
                                                    len(new)))
        noise = self._job('noise', os.urandom(20000), os.urandom(20000))
        self.assertEqual(delta.FULL, delta.best_payload(
            noise.source_path, noise.new_path, out))
        self.assertEqual(delta.FULL, delta.best_payload(
            None, job.new_path, out))
        with open(out, 'rb') as f:
            self.assertEqual(new, zstandard.ZstdDecompressor()
                             .decompressobj().decompress(f.read()))

    def _payload(self, job):
        with open(job.result_path, 'rb') as f:
            return f.read()

    def test_parallel_results_verified(self):
        jobs = [self._job('j%d' % i, *_pair(40000, seed=i))
                for i in range(3)]
        seen = []
        delta.compute_all(jobs, self.dir, workers=2,
                          progress=lambda *a: seen.append(a))
        for job in jobs:
            self.assertEqual(delta.DELTA, job.kind)
            with open(job.source_path, 'rb') as f, \
                    open(job.new_path, 'rb') as g:
                self.assertEqual(g.read(), delta.apply_delta(
                    f.read(), self._payload(job), 1 << 20))
        self.assertEqual(('delta', 3, 3), seen[-1])

    def test_small_jobs_in_process(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_clear.hostos.delta.INLINE_MAX', 1 << 20))
        self.useFixture(fixtures.MonkeyPatch(
            'os.fork', lambda: self.fail('forked for a small file')))
        job = self._job('small', *_pair(40000))
        delta.compute_all([job], self.dir, workers=2)
        self.assertEqual(delta.DELTA, job.kind)

    def test_time_and_memory_limits_fall_back_to_full(self):
        # bsdiff needs ~80 MB here: more than any free heap it could reuse.
        old, new = _pair(4 << 20)
        for kwargs in ({'timeout': 0}, {'mem_limit': 1 << 20}):
            job = self._job('limited', old, new)
            delta.compute_all([job], self.dir, **kwargs)
            self.assertEqual(delta.FULL, job.kind, kwargs)
            self.assertEqual(new, zstandard.ZstdDecompressor()
                             .decompressobj().decompress(self._payload(job)))


class CodecTest(testtools.TestCase):
    def test_sparse_and_dense_streams_round_trip(self):
        old = bytes(200000)
        new = bytearray(old)
        new[100:100] = os.urandom(5000)
        new[150000:150010] = b'x' * 10
        d = delta.make_delta(old, bytes(new))
        self.assertEqual(bytes(new), delta.apply_delta(old, d, len(new)))

    def test_unknown_codec_refused(self):
        old, new = _pair(30000)
        d = bytearray(delta.make_delta(old, new))
        d[delta._HEAD.size + 48] = ord('q')
        self.assertRaises(errors.VerificationError, delta.apply_delta, old,
                          bytes(d), len(new))
