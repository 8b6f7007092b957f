"""Manifests: what one OS version is, file by file (pure, no I/O).

A *manifest* lists every directory, regular file and symlink of version N
with its metadata, content hash, size and the version in which it last
changed.  It chains to the previous version's manifest by hash.  The
*top manifest* names the manifest (and the delta packs to version N) by
hash; it is the only signed document (see ``signing``), so everything a
host applies is reachable from one signature.

Both serialise to canonical JSON (sorted keys, no whitespace): the same
content always gives the same bytes and the same hash.
"""

import dataclasses
import datetime
import hashlib
import json
import posixpath
import stat

from nova_clear.hostos import errors
from nova_clear import safe_json

FORMAT = 1
DIR, FILE, SYMLINK = 'dir', 'file', 'symlink'
TYPES = (DIR, FILE, SYMLINK)
_MAX_PATH = 4096
# Documents from a mirror are parsed with safe_json: a manifest (with its
# entries, xattr lists) nests 4 deep, a top manifest 3, an envelope 1.
MAX_DEPTH = 8
MAX_TOP = 4 * 1024 * 1024
MAX_MANIFEST = 256 * 1024 * 1024


def canonical_json(obj):
    """Bytes of ``obj`` as canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False).encode()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One filesystem object of an OS version.

    ``content`` is the sha256 of a file's bytes (empty for others);
    ``xattrs`` is a sorted tuple of (name, hex value).
    """

    path: str
    type: str
    mode: int
    uid: int = 0
    gid: int = 0
    xattrs: tuple = ()
    size: int = 0
    content: str = ''
    target: str = ''
    last_changed: int = 0

    @property
    def hash(self):
        """sha256 over content and metadata (not the path)."""
        return sha256_hex(canonical_json(
            [self.type, self.mode, self.uid, self.gid,
             [list(x) for x in self.xattrs], self.content, self.target]))

    def to_dict(self):
        d = {'path': self.path, 'type': self.type, 'mode': self.mode,
             'uid': self.uid, 'gid': self.gid, 'hash': self.hash,
             'last_changed': self.last_changed}
        if self.xattrs:
            d['xattrs'] = [list(x) for x in self.xattrs]
        if self.type == FILE:
            d['size'] = self.size
            d['content'] = self.content
        if self.type == SYMLINK:
            d['target'] = self.target
        return d

    @classmethod
    def from_dict(cls, d):
        try:
            entry = cls(path=d['path'], type=d['type'], mode=d['mode'],
                        uid=d['uid'], gid=d['gid'],
                        xattrs=tuple(tuple(x) for x in d.get('xattrs', ())),
                        size=d.get('size', 0), content=d.get('content', ''),
                        target=d.get('target', ''),
                        last_changed=d['last_changed'])
        except (KeyError, TypeError, ValueError) as e:
            raise errors.ManifestError('malformed manifest entry %r: %s'
                                       % (d, e))
        _check_entry(entry)
        if d.get('hash') != entry.hash:
            raise errors.ManifestError('entry %s: hash does not match its '
                                       'content and metadata' % entry.path)
        return entry


def check_path(path):
    """Refuse anything but a normalised relative path inside the root."""
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH:
        raise errors.ManifestError('invalid path %r' % (path,))
    if path.startswith('/'):
        raise errors.ManifestError('absolute path %r in manifest' % path)
    if '\0' in path:
        raise errors.ManifestError('NUL in path %r' % path)
    if any(part in ('', '.', '..') for part in path.split('/')):
        raise errors.ManifestError('path traversal in %r' % path)


def _is_int(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and \
        value >= low


def _check_entry(e):
    check_path(e.path)
    if e.type not in TYPES:
        raise errors.ManifestError('%s: unknown type %r' % (e.path, e.type))
    if not (_is_int(e.mode) and e.mode == stat.S_IMODE(e.mode)):
        raise errors.ManifestError('%s: invalid mode %r' % (e.path, e.mode))
    for name in ('uid', 'gid', 'size', 'last_changed'):
        if not _is_int(getattr(e, name)):
            raise errors.ManifestError('%s: invalid %s' % (e.path, name))
    if e.type == FILE and not _is_sha256(e.content):
        raise errors.ManifestError('%s: invalid content hash' % e.path)
    if e.type == SYMLINK and (not e.target or '\0' in e.target):
        raise errors.ManifestError('%s: invalid symlink target' % e.path)
    for x in e.xattrs:
        if len(x) != 2 or not all(isinstance(v, str) for v in x):
            raise errors.ManifestError('%s: invalid xattr %r' % (e.path, x))
        bytes.fromhex(x[1])


def _is_sha256(value):
    return isinstance(value, str) and len(value) == 64 and \
        all(c in '0123456789abcdef' for c in value)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Every entry of version ``version``, sorted by path."""

    version: int
    entries: tuple
    previous_version: int = 0
    previous_sha256: str = ''

    def __post_init__(self):
        validate_tree(self.entries)

    def to_bytes(self):
        return canonical_json({
            'format': FORMAT, 'version': self.version,
            'previous': ({'version': self.previous_version,
                          'sha256': self.previous_sha256}
                         if self.previous_version else None),
            'entries': [e.to_dict() for e in self.entries]})

    @property
    def sha256(self):
        return sha256_hex(self.to_bytes())

    def by_path(self):
        return {e.path: e for e in self.entries}

    def files(self):
        return [e for e in self.entries if e.type == FILE]


def validate_tree(entries):
    """Entries are sorted, unique, and every parent is a directory entry.

    A parent that is a symlink would let a later write escape the root,
    so it is refused as well.
    """
    types = {}
    last = None
    for e in entries:
        if last is not None and e.path <= last:
            raise errors.ManifestError('entries not sorted or duplicate at '
                                       '%s' % e.path)
        last = e.path
        types[e.path] = e.type
    for e in entries:
        parent = posixpath.dirname(e.path)
        if parent and types.get(parent) != DIR:
            what = types.get(parent)
            if what == SYMLINK:
                raise errors.ManifestError(
                    'symlink escape: %s lies under symlink %s'
                    % (e.path, parent))
            raise errors.ManifestError('%s: parent %s is not a directory'
                                       % (e.path, parent))


def sort_key(entry):
    return entry.path


def make_manifest(version, entries, previous=None):
    """A manifest for ``version``; ``last_changed`` comes from ``previous``.

    An entry keeps the previous manifest's ``last_changed`` when its hash
    is unchanged, else it gets ``version``.
    """
    if not _is_int(version, 1):
        raise errors.ManifestError('version must be a positive integer')
    old = previous.by_path() if previous else {}
    out = []
    for e in sorted(entries, key=sort_key):
        prev = old.get(e.path)
        changed = version if prev is None or prev.hash != e.hash \
            else prev.last_changed
        out.append(dataclasses.replace(e, last_changed=changed))
    if previous is not None:
        if version <= previous.version:
            raise errors.DowngradeError(
                'version %d is not newer than %d: versions only go up'
                % (version, previous.version))
        return Manifest(version, tuple(out), previous.version,
                        previous.sha256)
    return Manifest(version, tuple(out))


def parse_manifest(data):
    """Validate and load manifest bytes (after their hash was checked)."""
    doc = load_json(data, 'manifest', MAX_MANIFEST)
    if doc.get('format') != FORMAT:
        raise errors.ManifestError('unsupported manifest format %r'
                                   % doc.get('format'))
    version = doc.get('version')
    if not _is_int(version, 1):
        raise errors.ManifestError('invalid manifest version %r' % version)
    prev = doc.get('previous') or {}
    entries = doc.get('entries')
    if not isinstance(entries, list):
        raise errors.ManifestError('manifest has no entry list')
    return Manifest(version, tuple(Entry.from_dict(d) for d in entries),
                    prev.get('version', 0), prev.get('sha256', ''))


def load_json(data, what, max_bytes, error=errors.ManifestError):
    """The JSON object ``data`` from a mirror, bounded (``safe_json``)."""
    try:
        doc = safe_json.loads(data, max_bytes, MAX_DEPTH)
    except safe_json.JSONRefused as e:
        raise error('%s refused: %s' % (what, e))
    except (ValueError, UnicodeDecodeError) as e:
        raise error('%s is not valid JSON: %s' % (what, e))
    if not isinstance(doc, dict):
        raise error('%s is not a JSON object' % what)
    return doc


EXPIRES_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
DEFAULT_LIFETIME = datetime.timedelta(days=7)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def expires_after(lifetime, now=None):
    """The ``expires`` string ``lifetime`` (a timedelta) from now."""
    return ((now or utcnow()) + lifetime).strftime(EXPIRES_FORMAT)


def parse_expires(text):
    """The aware UTC datetime of an ``expires`` string; ValueError."""
    if not isinstance(text, str):
        raise ValueError('expires is not a string')
    return datetime.datetime.strptime(text, EXPIRES_FORMAT).replace(
        tzinfo=datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Top:
    """The signed document of one version.

    ``manifest`` is (sha256, size) of the manifest; ``packs`` maps a
    from-version to (sha256, size) of the delta pack from it.
    ``expires`` (ISO-8601 UTC, ``2024-05-01T12:00:00Z``) bounds how long
    a mirror may serve it, as TUF's timestamp role: a host refuses an
    expired top, so a mirror cannot freeze it on old versions.
    """

    version: int
    manifest_sha256: str
    manifest_size: int
    packs: tuple = ()
    expires: str = ''

    def expired(self, now=None):
        return parse_expires(self.expires) <= (now or utcnow())

    def to_bytes(self):
        return canonical_json({
            'format': FORMAT, 'version': self.version,
            'expires': self.expires,
            'manifest': {'sha256': self.manifest_sha256,
                         'size': self.manifest_size},
            'packs': {str(v): {'sha256': s, 'size': n}
                      for v, s, n in self.packs}})

    def pack_from(self, version):
        for v, sha, size in self.packs:
            if v == version:
                return sha, size
        return None

    def with_pack(self, from_version, sha, size):
        packs = [p for p in self.packs if p[0] != from_version]
        packs.append((from_version, sha, size))
        return dataclasses.replace(self, packs=tuple(sorted(packs)))


def top_for(manifest, expires=''):
    data = manifest.to_bytes()
    return Top(manifest.version, sha256_hex(data), len(data),
               expires=expires)


def parse_top(data):
    doc = load_json(data, 'top manifest', MAX_TOP)
    try:
        if doc['format'] != FORMAT:
            raise errors.ManifestError('unsupported top manifest format')
        packs = tuple(sorted(
            (int(v), p['sha256'], p['size'])
            for v, p in doc['packs'].items()))
        top = Top(doc['version'], doc['manifest']['sha256'],
                  doc['manifest']['size'], packs, doc['expires'])
        parse_expires(top.expires)
    except KeyError as e:
        raise errors.ManifestError('malformed top manifest: no %s' % e)
    except (TypeError, ValueError, AttributeError) as e:
        raise errors.ManifestError('malformed top manifest: %s' % e)
    if not (_is_int(top.version, 1) and _is_sha256(top.manifest_sha256) and
            _is_int(top.manifest_size)):
        raise errors.ManifestError('malformed top manifest')
    for _v, sha, size in top.packs:
        if not (_is_sha256(sha) and _is_int(size)):
            raise errors.ManifestError('malformed pack reference')
    return top
