"""Bad input: a clear error, exit status 1, and nothing applied."""

import dataclasses
import datetime
import json
import os

from nova_clear.hostos import errors
from nova_clear.hostos import fetch
from nova_clear.hostos import manifest
from nova_clear.hostos import signing
from nova_clear.hostos import stage
from nova_clear.hostos import store
from nova_clear.hostos import updater
from tests.functional.hostos import base
from tests.functional import mounts


def _flip(path, offset=-100):
    with open(path, 'r+b') as f:
        f.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xff]))


class InstalledRootTestCase(base.HostOSTestCase):
    """Version 1 installed; refusals must leave it exactly as it was."""

    def setUp(self):
        super().setUp()
        self.publish(1)
        self.update('update', '--to', '1')
        self.before = self._snapshot_of_root()

    def _snapshot_of_root(self):
        return (self.state(), stage.snapshots(self.root),
                sorted(os.listdir(os.path.join(self.root, 'versions'))))

    def assert_refused(self, message, *args, pubkey=None, root=None):
        proc = self.update(*(args or ('update',)), check=False,
                           pubkey=pubkey, root=root)
        self.assertEqual(1, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('clear-update: error: ', proc.stderr)
        self.assertIn(message, proc.stderr)
        if root is None:
            self.assertEqual(self.before, self._snapshot_of_root())
            self.assert_snapshot_is(1)
        return proc


class RefusalTest(InstalledRootTestCase):
    def test_tampered_delta_pack(self):
        self.publish(2, delta_from=1)
        _flip(os.path.join(self.content, store.pack_relpath(1, 2)))
        self.assert_refused('does not match the hash in the signed manifest')

    def test_delta_on_damaged_local_file(self):
        self.publish(2, delta_from=1)
        _flip(os.path.join(self.root, 'versions/1/usr/lib/os-1.0/libos.so'),
              1000)
        proc = self.update('update', check=False)
        self.assertEqual(1, proc.returncode)
        self.assertIn('does not produce the content in the signed manifest',
                      proc.stderr)
        self.assertIn('usr/lib/os-1.0/libos.so is damaged', proc.stderr)
        self.assertEqual(self.before, self._snapshot_of_root())

    def test_tampered_full_file(self):
        self.publish(2)
        m = json.load(open(os.path.join(self.content,
                                        store.manifest_relpath(2))))
        lib = [e for e in m['entries'] if e['path'].endswith('libos.so')][0]
        path = os.path.join(self.content, store.object_relpath(lib['content']))
        _flip(path, 40)
        self.assert_refused(lib['content'])

    def test_tampered_manifest(self):
        self.publish(2)
        path = os.path.join(self.content, store.manifest_relpath(2))
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data.replace(b'"mode":420', b'"mode":511', 1))
        self.assert_refused('does not match the signed top manifest')

    def test_tampered_signature_or_top(self):
        self.publish(2)
        path = os.path.join(self.content, store.top_relpath(2))
        env = json.load(open(path))
        env['payload'] = env['payload'].replace('"version":2', '"version":3')
        os.rename(os.path.join(self.content, 'versions', '2'),
                  os.path.join(self.content, 'versions', '3'))
        with open(os.path.join(self.content, store.top_relpath(3)), 'w') as f:
            json.dump(env, f)
        self.assert_refused('does not verify', 'update', '--to', '3')
        env['signature'] = 'AAAA' + env['signature'][4:]
        self.assert_refused('signature', 'update', '--to', '3')

    def test_wrong_key(self):
        self.publish(2)
        other = os.path.join(self.dir, 'other')
        signing.generate_key(other, other + '.pub')
        self.assert_refused('does not verify', pubkey=other + '.pub')

    def test_downgrade_and_replay(self):
        self.publish(2)
        self.update('update')
        self.boot_once()
        self.update('mark-good')
        self.before = self._snapshot_of_root()
        self.assert_refused('not newer than the installed 2', 'update',
                            '--to', '1')
        # The signed top of version 1 served as version 3.
        os.makedirs(os.path.join(self.content, 'versions', '3'))
        with open(os.path.join(self.content, store.top_relpath(1)),
                  'rb') as src, open(os.path.join(
                      self.content, store.top_relpath(3)), 'wb') as dst:
            dst.write(src.read())
        self.assert_refused('replayed', 'update', '--to', '3')
        self.assertEqual(2, self.boot_once())

    def test_tries_below_one(self):
        self.publish(2, delta_from=1)
        for tries in ('-1', '0'):
            proc = self.update('update', '--tries', tries, check=False)
            self.assertEqual(2, proc.returncode, proc.stdout + proc.stderr)
            self.assertIn('argument --tries: must be at least 1',
                          proc.stderr)
            self.assertEqual(self.before, self._snapshot_of_root())
        # The library refuses too, before downloading anything.
        del self.server.requests[:]
        u = updater.Updater(self.root, fetch.Remote(self.server.url),
                            signing.load_public_key(self.key + '.pub'))
        self.assertRaises(errors.BootStateError, u.update, None, -1)
        self.assertEqual([], self.server.requests)

    def test_truncated_download(self):
        self.publish(2, delta_from=1)
        self.server.cut_always.add(store.pack_relpath(1, 2))
        self.assert_refused('truncated download')

    def test_path_traversal(self):
        key = signing.load_private_key(self.key)
        ok = manifest.Entry('etc', manifest.DIR, 0o755)
        cases = {
            '..': [manifest.Entry('../escaped', manifest.DIR, 0o755), ok],
            'absolute': [manifest.Entry('/escaped', manifest.DIR, 0o755),
                         ok],
            'symlink escape': [
                ok, manifest.Entry('etc/link', manifest.SYMLINK, 0o777,
                                   target='/tmp'),
                manifest.Entry('etc/link/passwd', manifest.FILE, 0o644,
                               size=1, content='0' * 64)],
        }
        for version, (what, entries) in enumerate(sorted(cases.items()), 2):
            data = manifest.canonical_json({
                'format': 1, 'version': version, 'previous': None,
                'entries': [e.to_dict() for e in entries]})
            store.write_atomic(os.path.join(
                self.content, store.manifest_relpath(version)), data)
            top = manifest.Top(version, manifest.sha256_hex(data), len(data),
                               expires='2100-01-01T00:00:00Z')
            store.write_atomic(os.path.join(
                self.content, store.top_relpath(version)),
                signing.seal(key, top.to_bytes()))
            proc = self.assert_refused('', 'update', '--to', str(version))
            self.assertRegex(proc.stderr,
                             'path traversal|absolute path|symlink escape',
                             what)
        self.assertFalse(os.path.lexists(os.path.join(self.dir, 'escaped')))

    def test_disk_full_while_staging(self):
        small = self.useFixture(mounts.SmallDisk(
            os.path.join(self.dir, 'small'), '6m')).path
        self.update('update', '--to', '1', root=small)
        self.before = (self.state(small), stage.snapshots(small))
        # Compresses to almost nothing, needs 8 MiB on disk.
        self.publish(2, delta_from=1, extra={'var/big': b'\0' * (8 << 20)})
        proc = self.update('update', check=False, root=small)
        self.assertEqual(1, proc.returncode)
        self.assertIn('disk full while staging version 2', proc.stderr)
        self.assertIn('nothing was applied', proc.stderr)
        self.assertEqual(self.before, (self.state(small),
                                       stage.snapshots(small)))
        self.assertEqual(['1'], os.listdir(os.path.join(small, 'versions')))
        self.assert_snapshot_is(1, root=small)


class HostileMirrorTest(InstalledRootTestCase):
    """Mirrors that send too much, deep JSON or stale metadata."""

    def _pack_download(self):
        """Download pack 1->2 in-process; (error, largest .part seen)."""
        u = updater.Updater(self.root, fetch.Remote(self.server.url),
                            signing.load_public_key(self.key + '.pub'))
        sha, size = u.fetch_top(2).pack_from(1)
        dest = os.path.join(self.dir, 'pack')
        seen = [0]

        def progress(step, _done, _total=None):
            if os.path.exists(dest + '.part'):
                seen[0] = max(seen[0], os.path.getsize(dest + '.part'))

        e = self.assertRaises(errors.FetchError, u.remote.download,
                              store.pack_relpath(1, 2), dest, size=size,
                              sha256=sha, progress=progress)
        self.assertFalse(os.path.lexists(dest + '.part'))
        self.assertFalse(os.path.lexists(dest))
        return e, seen[0], size

    def test_oversized_download_stopped_at_size(self):
        self.publish(2, delta_from=1)
        rel = store.pack_relpath(1, 2)
        # No Content-Length: the mirror streams 64 MiB past the pack.
        self.server.oversize[rel] = (64 << 20, False)
        e, written, size = self._pack_download()
        self.assertIn('sends more bytes while the signed manifest allows %d'
                      % size, str(e))
        self.assertLessEqual(written, size + fetch.CHUNK)
        self.assertLessEqual(written, size)
        # The client hung up long before the 64 MiB were sent.
        self.assertLess(self.server.sent[rel], size + (32 << 20))
        proc = self.assert_refused('sends more bytes')
        self.assertNotIn('Traceback', proc.stderr)
        downloads = os.path.join(self.root, '.clear-update', 'downloads')
        self.assertEqual([], os.listdir(downloads)
                         if os.path.isdir(downloads) else [])

    def test_oversized_announcement_refused_before_writing(self):
        self.publish(2, delta_from=1)
        self.server.oversize[store.pack_relpath(1, 2)] = (1 << 20, True)
        e, written, size = self._pack_download()
        self.assertIn('announces %d bytes' % (size + (1 << 20)), str(e))
        self.assertEqual(0, written)
        self.assert_refused('announces')

    def test_deep_json_top_manifest(self):
        """1 MiB-deep nesting, before and after the signature check."""
        deep = b'[' * (1 << 20) + b']' * (1 << 20)
        top = os.path.join(self.content, store.top_relpath(2))
        os.makedirs(os.path.dirname(top))
        store.write_atomic(os.path.join(self.content, 'latest'), b'2\n')
        key = signing.load_private_key(self.key)
        for envelope in (b'{"payload":' + deep + b'}',
                         signing.seal(key, deep)):
            with open(top, 'wb') as f:
                f.write(envelope)
            proc = self.assert_refused('nested deeper than 8 levels',
                                       'update', '--to', '2')
            self.assertNotIn('Traceback', proc.stderr)
            self.assertEqual(1, len(proc.stderr.splitlines()), proc.stderr)
            proc = self.assert_refused('nested deeper than 8 levels',
                                       'check')
            self.assertEqual(1, len(proc.stderr.splitlines()), proc.stderr)

    def _resign_top(self, version, expires):
        key = signing.load_private_key(self.key)
        path = os.path.join(self.content, store.top_relpath(version))
        with open(path, 'rb') as f:
            top = manifest.parse_top(signing.open_envelope(
                key.public_key(), f.read()))
        top = dataclasses.replace(top, expires=expires)
        store.write_atomic(path, signing.seal(key, top.to_bytes()))

    def test_expired_top_manifest(self):
        """A mirror frozen on (validly signed) old metadata."""
        self.publish(2, delta_from=1)
        self._resign_top(2, manifest.expires_after(
            datetime.timedelta(seconds=-1)))
        self.assert_refused('top manifest of version 2 expired at ',
                            'update')
        proc = self.assert_refused('serves only expired top manifests',
                                   'check')
        self.assertIn('clear-image refresh', proc.stderr)
        # A publisher's refresh makes it acceptable again.
        out = self.image('refresh', '--content', self.content, '--key',
                         self.key, '--expires-days', '1').stdout
        self.assertIn('top manifest 2 re-signed, expires ', out)
        self.assertIn('available 2', self.update('check').stdout)
        self.update('update')
        self.assertEqual(2, self.state().pending)

    def test_top_without_expiry_refused(self):
        self.publish(2)
        self._resign_top(2, '')
        self.assert_refused('malformed top manifest', 'update')

    def test_pending_never_replaced_by_older(self):
        self.publish(2)
        self.publish(3)
        self.update('update', '--to', '3')
        self.before = self._snapshot_of_root()
        self.assertEqual(3, self.before[0].pending)
        self.assert_refused('older than the staged pending version 3',
                            'update', '--to', '2')
        # A mirror whose latest went back (frozen, or rolled back) too.
        store.write_atomic(os.path.join(self.content, 'latest'), b'2\n')
        self.assert_refused('older than the staged pending version 3',
                            'update')
        self.assert_snapshot_is(3)
