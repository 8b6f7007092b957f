"""Manifests and top manifests: format, hashes, chain, path safety."""

import dataclasses
import datetime
import os

import fixtures
import testtools

from nova_clear.hostos import errors
from nova_clear.hostos import manifest
from nova_clear.hostos import pack
from nova_clear.hostos import signing

SHA_A = 'a' * 64
SHA_B = 'b' * 64


def _entries(content=SHA_A):
    return [
        manifest.Entry('bin', manifest.DIR, 0o755),
        manifest.Entry('bin/sh', manifest.SYMLINK, 0o777, target='busybox'),
        manifest.Entry('bin/busybox', manifest.FILE, 0o755, size=3,
                       content=content),
        manifest.Entry('etc', manifest.DIR, 0o755, xattrs=(
            ('user.x', '01ff'),)),
    ]


class EntryTest(testtools.TestCase):
    def test_hash_covers_metadata_not_path(self):
        e = _entries()[2]
        self.assertEqual(e.hash,
                         dataclasses.replace(e, path='sbin/other').hash)
        for change in ({'mode': 0o700}, {'uid': 1}, {'gid': 1},
                       {'content': SHA_B},
                       {'xattrs': (('security.capability', '00'),)}):
            self.assertNotEqual(e.hash, dataclasses.replace(e, **change).hash,
                                change)

    def test_round_trip(self):
        for e in _entries():
            self.assertEqual(e, manifest.Entry.from_dict(e.to_dict()))

    def test_forged_hash_refused(self):
        d = _entries()[2].to_dict()
        d['mode'] = 0o4755
        self.assertRaises(errors.ManifestError, manifest.Entry.from_dict, d)


class PathTest(testtools.TestCase):
    def test_traversal_refused(self):
        for bad in ('../etc/passwd', 'a/../../b', '/etc/passwd', 'a//b',
                    './a', 'a/.', '', 'a\0b'):
            self.assertRaises(errors.ManifestError, manifest.check_path, bad)

    def test_normal_paths(self):
        for good in ('etc', 'usr/lib/x.so.1', '..hidden', 'a/...'):
            manifest.check_path(good)

    def test_symlink_parent_refused(self):
        entries = [manifest.Entry('etc', manifest.SYMLINK, 0o777,
                                  target='/tmp'),
                   manifest.Entry('etc/passwd', manifest.FILE, 0o644,
                                  size=1, content=SHA_A)]
        e = self.assertRaises(errors.ManifestError, manifest.make_manifest,
                              1, entries)
        self.assertIn('symlink escape', str(e))

    def test_missing_parent_refused(self):
        self.assertRaises(errors.ManifestError, manifest.make_manifest, 1,
                          [manifest.Entry('a/b', manifest.DIR, 0o755)])


class ManifestTest(testtools.TestCase):
    def test_canonical_and_parsable(self):
        m = manifest.make_manifest(1, _entries())
        self.assertEqual(m.to_bytes(),
                         manifest.make_manifest(1, reversed(_entries()))
                         .to_bytes())
        self.assertEqual(m, manifest.parse_manifest(m.to_bytes()))

    def test_chain_and_last_changed(self):
        m1 = manifest.make_manifest(1, _entries())
        m2 = manifest.make_manifest(2, _entries(SHA_B), m1)
        self.assertEqual((1, m1.sha256), (m2.previous_version,
                                          m2.previous_sha256))
        changed = {e.path: e.last_changed for e in m2.entries}
        self.assertEqual(2, changed['bin/busybox'])
        self.assertEqual(1, changed['bin/sh'])

    def test_versions_only_go_up(self):
        m2 = manifest.make_manifest(2, _entries())
        self.assertRaises(errors.DowngradeError, manifest.make_manifest, 2,
                          _entries(), m2)

    def test_parse_refuses_garbage(self):
        for data in (b'not json', b'[]', b'{"format": 9}',
                     b'{"format": 1, "version": 0, "entries": []}',
                     b'{"format": 1, "version": 1}'):
            self.assertRaises(errors.ManifestError, manifest.parse_manifest,
                              data)

    def test_parse_refuses_traversal(self):
        doc = manifest.make_manifest(1, _entries()).to_bytes()
        self.assertRaises(errors.ManifestError, manifest.parse_manifest,
                          doc.replace(b'"etc"', b'"../x"'))


class TopTest(testtools.TestCase):
    def test_round_trip_with_packs(self):
        m = manifest.make_manifest(3, _entries())
        top = manifest.top_for(m, '2030-01-02T03:04:05Z').with_pack(
            2, SHA_A, 10).with_pack(
            1, SHA_B, 20).with_pack(2, SHA_B, 30)
        parsed = manifest.parse_top(top.to_bytes())
        self.assertEqual(top, parsed)
        self.assertEqual((SHA_B, 30), parsed.pack_from(2))
        self.assertIsNone(parsed.pack_from(7))
        self.assertEqual(m.sha256, parsed.manifest_sha256)

    def test_expiry(self):
        m = manifest.make_manifest(3, _entries())
        now = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)
        expires = manifest.expires_after(datetime.timedelta(days=7), now)
        self.assertEqual('2024-05-08T12:00:00Z', expires)
        top = manifest.parse_top(manifest.top_for(m, expires).to_bytes())
        self.assertFalse(top.expired(now))
        self.assertTrue(top.expired(now + datetime.timedelta(days=7)))
        for bad in ('', '2024-05-08', '2024-05-08T12:00:00+02:00', 7):
            data = manifest.top_for(m).to_bytes().replace(
                b'"expires":""', b'"expires":%s'
                % manifest.canonical_json(bad))
            e = self.assertRaises(errors.ManifestError, manifest.parse_top,
                                  data)
            self.assertIn('malformed top manifest', str(e))
        data = manifest.top_for(m).to_bytes().replace(b'"expires":"",', b'')
        e = self.assertRaises(errors.ManifestError, manifest.parse_top, data)
        self.assertIn("no 'expires'", str(e))

    def test_malformed(self):
        for data in (b'{}', b'{"format": 1, "version": 1}',
                     b'{"format":1,"version":1,"manifest":{"sha256":"x",'
                     b'"size":1},"packs":{}}'):
            self.assertRaises(errors.ManifestError, manifest.parse_top, data)


class DeepJSONTest(testtools.TestCase):
    """Every JSON document from a mirror is a one-line refusal when deep."""

    DEEP = b'[' * (1 << 20) + b']' * (1 << 20)

    def test_manifest_and_top(self):
        for parse in (manifest.parse_top, manifest.parse_manifest):
            e = self.assertRaises(errors.ManifestError, parse, self.DEEP)
            self.assertIn('nested deeper than 8 levels', str(e))

    def test_envelope(self):
        e = self.assertRaises(errors.SignatureError, signing.open_envelope,
                              None, b'{"payload":' + self.DEEP + b'}')
        self.assertIn('nested deeper than 8 levels', str(e))

    def test_pack_index(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'p')
        with open(path, 'wb') as f:
            f.write(pack.MAGIC + pack._LEN.pack(len(self.DEEP)) + self.DEEP)
        e = self.assertRaises(errors.VerificationError, pack.PackReader,
                              path)
        self.assertIn('nested deeper than 8 levels', str(e))
