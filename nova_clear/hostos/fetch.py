"""Downloads from a content directory over HTTP(S), with resume.

Large files go to ``<dest>.part`` first; an interrupted or truncated
transfer continues with a ``Range`` request where it stopped.  A file is
renamed into place only when its size and sha256 match what the signed
manifests promise.  The size is enforced while streaming: a mirror that
announces or sends more is cut off at the expected size (nothing past it
is written) and the partial file is removed.
"""

import hashlib
import http.client
import os

import requests
import urllib3

from nova_clear.hostos import errors

CHUNK = 256 * 1024


def _noop(*_args):
    pass


class Remote:
    """One content directory, e.g. ``https://updates.example/os``."""

    def __init__(self, base_url, timeout=30, attempts=5, session=None):
        self.base_url = base_url.rstrip('/') + '/'
        self.timeout = timeout
        self.attempts = attempts
        self.session = session or requests.Session()

    def url(self, relpath):
        return self.base_url + relpath

    def get_small(self, relpath, max_size=64 * 1024 * 1024):
        """The bytes of a small file (manifests), at most ``max_size``."""
        try:
            with self.session.get(self.url(relpath), stream=True,
                                  timeout=self.timeout) as resp:
                if resp.status_code != 200:
                    raise errors.FetchError('GET %s: HTTP %d'
                                            % (self.url(relpath),
                                               resp.status_code))
                data = bytearray()
                for block in resp.iter_content(CHUNK):
                    data += block
                    if len(data) > max_size:
                        raise errors.FetchError('%s is larger than %d bytes'
                                                % (relpath, max_size))
                return bytes(data)
        except requests.RequestException as e:
            raise errors.FetchError('GET %s failed: %s'
                                    % (self.url(relpath), e))

    def download(self, relpath, dest, size=None, sha256=None,
                 progress=_noop, max_size=1 << 40):
        """Fetch ``relpath`` to ``dest``, resuming; verify size and hash.

        Without ``size``/``sha256`` (compressed objects, checked after
        decompression) the size is the one the server announces.
        """
        if sha256 and os.path.exists(dest) and _sha256(dest) == sha256:
            return dest
        part = dest + '.part'
        expected = size
        for _attempt in range(self.attempts):
            have = os.path.getsize(part) if os.path.exists(part) else 0
            if expected is not None and have > expected:
                os.unlink(part)
                have = 0
            if expected is None or have < expected:
                limit = expected if expected is not None else max_size
                try:
                    total = self._get_range(relpath, part, have, progress,
                                            limit)
                except errors.FetchError:
                    _unlink(part)
                    raise
                if expected is None:
                    expected = total
            if expected is not None and os.path.getsize(part) == expected:
                break
        got = os.path.getsize(part) if os.path.exists(part) else 0
        if got != expected:
            raise errors.FetchError(
                'truncated download of %s: %d of %s bytes after %d '
                'attempts' % (relpath, got, expected, self.attempts))
        if sha256 and _sha256(part) != sha256:
            os.unlink(part)
            raise errors.VerificationError(
                '%s does not match the hash in the signed manifest '
                '(tampered or corrupt); discarded' % relpath)
        os.replace(part, dest)
        return dest

    def _get_range(self, relpath, part, have, progress, limit):
        """Append to ``part`` from byte ``have``; the file's total size.

        FetchError, before anything past it is written, when the server
        announces or sends more than ``limit`` bytes in all.
        """
        headers = {'Range': 'bytes=%d-' % have} if have else {}
        total = None
        try:
            with self.session.get(self.url(relpath), headers=headers,
                                  stream=True, timeout=self.timeout) as resp:
                if resp.status_code == 206 and have:
                    mode = 'ab'
                    total = _range_total(resp.headers.get('Content-Range'))
                elif resp.status_code == 200:
                    mode, have = 'wb', 0
                    length = resp.headers.get('Content-Length')
                    total = int(length) if length and length.isdigit() \
                        else None
                else:
                    raise errors.FetchError('GET %s: HTTP %d'
                                            % (self.url(relpath),
                                               resp.status_code))
                if total is not None and total > limit:
                    raise _too_large(relpath, limit,
                                     'announces %d bytes' % total)
                with open(part, mode) as out:
                    try:
                        for block in resp.raw.stream(CHUNK,
                                                     decode_content=False):
                            if have + len(block) > limit:
                                raise _too_large(relpath, limit,
                                                 'sends more bytes')
                            out.write(block)
                            have += len(block)
                            progress('download', have, total)
                    finally:
                        out.flush()
                        os.fsync(out.fileno())
        except (requests.RequestException, urllib3.exceptions.HTTPError,
                http.client.HTTPException, ConnectionError, TimeoutError):
            # A broken transfer: the next attempt resumes from the part.
            progress('download-interrupted', have, total)
        return total


def _too_large(relpath, limit, what):
    return errors.FetchError(
        '%s: the mirror %s while the signed manifest allows %d; download '
        'stopped and discarded' % (relpath, what, limit))


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _range_total(header):
    """The total of ``Content-Range: bytes a-b/total``."""
    if header and '/' in header:
        total = header.rsplit('/', 1)[1]
        if total.isdigit():
            return int(total)
    return None


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1024 * 1024), b''):
            h.update(block)
    return h.hexdigest()
