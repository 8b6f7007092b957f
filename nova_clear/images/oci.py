"""Read container image archives: ``docker save`` (docker-archive) and OCI
image-layout tarballs.

:func:`open_archive` validates the structure, the manifest and the config
against the specs (bounded: members of the archive, JSON size and nesting,
layers) and returns an :class:`ImageArchive`.  :func:`verify` then reads
every layer once, unprivileged, checking its digests while streaming it
and every member against :mod:`.tarstream`'s rules, before anything of the
image is unpacked; :func:`layer_streams` gives the layers to the applier.
"""

import dataclasses
import gzip
import hashlib
import io
import re
import tarfile

import zstandard

from nova_clear import exception as clear_exc
from nova_clear.i18n import _
from nova_clear.images import tarstream
from nova_clear import safe_json

OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
CONFIG_TYPES = ('application/vnd.oci.image.config.v1+json',
                'application/vnd.docker.container.image.v1+json')
LAYER_TYPES = {
    'application/vnd.oci.image.layer.v1.tar': None,
    'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
    'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
    'application/vnd.docker.image.rootfs.diff.tar': None,
    'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
}
_DIGEST = re.compile(r'^sha256:([0-9a-f]{64})$')
# an archive holds its blobs and a few JSON documents: a docker save of a
# 128-layer image has ~400 members
MAX_ARCHIVE_MEMBERS = 4096
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64


@dataclasses.dataclass
class Layer:
    name: str            # member of the archive
    compression: str     # None, 'gzip' or 'zstd'
    blob_digest: str     # sha256 hex of the member as stored, or None
    diff_id: str         # sha256 hex of the uncompressed tar, or None


@dataclasses.dataclass
class ImageArchive:
    kind: str            # 'docker-archive' or 'oci-layout'
    digest: str          # sha256 hex of the image config: the cache key
    config: dict
    layers: list
    path: str
    image_id: str


def is_container_archive(path):
    """True if ``path`` is a tar holding an OCI layout or docker save."""
    names = set()
    try:
        with tarfile.open(path, 'r:', tarinfo=tarstream.BoundedTarInfo) \
                as tar:
            while len(names) <= 64:
                member = tar.next()
                if member is None:
                    break
                names.add(member.name.lstrip('./'))
                tar.members.clear()
    except Exception:   # noqa: B902 - whatever it is, not an archive
        return False
    return 'oci-layout' in names and 'index.json' in names or \
        'manifest.json' in names


def _digest_hex(value, what, image_id):
    m = _DIGEST.match(value or '')
    if not m:
        raise clear_exc.InvalidContainerImage(
            image_id=image_id, reason=_('%(what)s has no valid sha256 '
                                        'digest (%(v)r)') %
            {'what': what, 'v': value})
    return m.group(1)


def _open_file(path_or_file):
    if isinstance(path_or_file, str):
        return open(path_or_file, 'rb')
    path_or_file.seek(0)
    return path_or_file


class _Archive:
    def __init__(self, path_or_file, image_id):
        self.path = path_or_file if isinstance(path_or_file, str) else \
            getattr(path_or_file, 'name', None)
        self.image_id = image_id
        self.members = {}
        self.file = _open_file(path_or_file)
        try:
            self.tar = tarfile.open(fileobj=self.file, mode='r:',
                                    tarinfo=tarstream.BoundedTarInfo)
            while True:
                member = self.tar.next()
                if member is None:
                    break
                if len(self.members) >= MAX_ARCHIVE_MEMBERS:
                    raise self.bad(_('more than %d members in the archive')
                                   % MAX_ARCHIVE_MEMBERS)
                self.members[member.name.lstrip('./').lstrip('/')] = member
            self.tar.members.clear()
        except tarstream.MALFORMED + (tarstream.Oversized,
                                      RecursionError) as e:
            raise clear_exc.InvalidContainerImage(
                image_id=image_id,
                reason=_('malformed tar archive: %s') % e)

    def bad(self, reason):
        return clear_exc.InvalidContainerImage(image_id=self.image_id,
                                               reason=reason)

    def read(self, name, expected_hex=None, max_bytes=MAX_JSON_BYTES):
        member = self.members.get(name)
        if member is None or not member.isfile():
            raise self.bad(_('%s is missing') % name)
        if member.size > max_bytes:
            raise self.bad(_('%(n)s holds %(s)d bytes (at most %(m)d)') %
                           {'n': name, 's': member.size, 'm': max_bytes})
        data = self.tar.extractfile(member).read()
        if expected_hex and hashlib.sha256(data).hexdigest() != expected_hex:
            raise self.bad(_('digest mismatch for %s') % name)
        return data

    def json(self, name, expected_hex=None):
        return self.parse_json(name, self.read(name, expected_hex))

    def parse_json(self, name, data):
        try:
            return safe_json.loads(data, MAX_JSON_BYTES, MAX_JSON_DEPTH)
        except ValueError as e:
            raise self.bad(_('%(n)s is not acceptable JSON: %(e)s') %
                           {'n': name, 'e': e})

    def blob(self, name):
        """The stored member ``name``, read as a stream."""
        return self.tar.extractfile(self.members[name])


def _check_config(arc, config):
    if not isinstance(config, dict):
        raise arc.bad(_('the image config is not an object'))
    if config.get('architecture', 'amd64') not in ('amd64', 'x86_64'):
        raise arc.bad(_('architecture %s cannot run here') %
                      config.get('architecture'))
    if config.get('os', 'linux') != 'linux':
        raise arc.bad(_('os %s cannot run here') % config.get('os'))
    rootfs = config.get('rootfs') or {}
    if rootfs.get('type') != 'layers' or \
            not isinstance(rootfs.get('diff_ids'), list):
        raise arc.bad(_('the image config has no rootfs.diff_ids'))
    if len(rootfs['diff_ids']) > tarstream.Limits.layers:
        raise arc.bad(_('%(n)d layers (at most %(m)d)') %
                      {'n': len(rootfs['diff_ids']),
                       'm': tarstream.Limits.layers})
    return [_digest_hex(d, 'rootfs.diff_ids', arc.image_id)
            for d in rootfs['diff_ids']]


def _open_docker(arc):
    manifest = arc.json('manifest.json')
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise arc.bad(_('manifest.json must describe exactly one image'))
    entry = manifest[0]
    if not isinstance(entry, dict) or 'Config' not in entry or \
            not isinstance(entry.get('Layers'), list):
        raise arc.bad(_('manifest.json lacks Config or Layers'))
    config_name = entry['Config']
    m = re.match(r'^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$',
                 config_name)
    config_data = arc.read(config_name, m.group(1) if m else None)
    digest = hashlib.sha256(config_data).hexdigest()
    config = arc.parse_json(config_name, config_data)
    diff_ids = _check_config(arc, config)
    if len(diff_ids) != len(entry['Layers']):
        raise arc.bad(_('%(l)d layers but %(d)d diff_ids') %
                      {'l': len(entry['Layers']), 'd': len(diff_ids)})
    layers = []
    for name, diff_id in zip(entry['Layers'], diff_ids):
        if name not in arc.members:
            raise arc.bad(_('layer %s is missing') % name)
        layers.append(Layer(name, _sniff_compression(arc, name), None,
                            diff_id))
    return ImageArchive('docker-archive', digest, config, layers, arc.path,
                        arc.image_id)


def _sniff_compression(arc, name):
    head = arc.blob(name).read(4)
    if head[:2] == b'\x1f\x8b':
        return 'gzip'
    if head == b'\x28\xb5\x2f\xfd':
        return 'zstd'
    return None


def _open_oci(arc):
    layout = arc.json('oci-layout')
    if not isinstance(layout, dict) or \
            layout.get('imageLayoutVersion') != '1.0.0':
        raise arc.bad(_('unsupported imageLayoutVersion %r') %
                      layout.get('imageLayoutVersion'))
    index = arc.json('index.json')
    manifests = index.get('manifests') if isinstance(index, dict) else None
    if not manifests:
        raise arc.bad(_('index.json lists no manifest'))
    desc = manifests[0]
    if not isinstance(desc, dict):
        raise arc.bad(_('index.json lists no manifest'))
    if desc.get('mediaType') == OCI_INDEX:
        raise arc.bad(_('nested image indexes are not supported'))
    if desc.get('mediaType') not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise arc.bad(_('unknown manifest media type %r') %
                      desc.get('mediaType'))
    mhex = _digest_hex(desc.get('digest'), 'the manifest', arc.image_id)
    manifest = arc.json('blobs/sha256/' + mhex, mhex)
    if not isinstance(manifest, dict):
        raise arc.bad(_('the manifest is not an object'))
    config_desc = manifest.get('config') or {}
    if config_desc.get('mediaType') not in CONFIG_TYPES:
        raise arc.bad(_('unknown config media type %r') %
                      config_desc.get('mediaType'))
    chex = _digest_hex(config_desc.get('digest'), 'the config',
                       arc.image_id)
    config = arc.json('blobs/sha256/' + chex, chex)
    diff_ids = _check_config(arc, config)
    layer_descs = manifest.get('layers')
    if not isinstance(layer_descs, list) or \
            len(layer_descs) != len(diff_ids):
        raise arc.bad(_('the manifest\'s layers do not match the config\'s '
                        'diff_ids'))
    layers = []
    for desc, diff_id in zip(layer_descs, diff_ids):
        mtype = desc.get('mediaType') if isinstance(desc, dict) else None
        if mtype not in LAYER_TYPES:
            raise arc.bad(_('unknown layer media type %r') % mtype)
        lhex = _digest_hex(desc.get('digest'), 'a layer', arc.image_id)
        name = 'blobs/sha256/' + lhex
        if name not in arc.members:
            raise arc.bad(_('layer blob %s is missing') % name)
        layers.append(Layer(name, LAYER_TYPES[mtype], lhex, diff_id))
    return ImageArchive('oci-layout', chex, config, layers, arc.path,
                        arc.image_id)


def open_archive(path_or_file, image_id):
    """Validate the archive (a path, or a seekable binary file, which is
    left open); return an :class:`ImageArchive`."""
    arc = _Archive(path_or_file, image_id)
    try:
        if 'oci-layout' in arc.members:
            return _open_oci(arc)
        if 'manifest.json' in arc.members:
            return _open_docker(arc)
        raise arc.bad(_('neither an OCI image layout (oci-layout, '
                        'index.json) nor a docker save archive '
                        '(manifest.json)'))
    finally:
        if isinstance(path_or_file, str):
            arc.file.close()


class _HashingReader(io.RawIOBase):
    def __init__(self, raw):
        self.raw = raw
        self.sha = hashlib.sha256()

    def readable(self):
        return True

    def readinto(self, buf):
        data = self.raw.read(len(buf))
        self.sha.update(data)
        buf[:len(data)] = data
        return len(data)


def layer_streams(archive, path_or_file):
    """Yield ``(layer, stream)`` in order, ``stream`` being the layer's
    uncompressed tar.  Each layer's digests are computed while it is read
    and checked once the caller has read it (drained first); a mismatch
    raises :class:`~nova_clear.exception.InvalidContainerImage`."""
    f = _open_file(path_or_file)
    try:
        arc = _Archive(f, archive.image_id)
        for layer in archive.layers:
            if layer.name not in arc.members:
                raise arc.bad(_('layer %s is missing') % layer.name)
            blob = _HashingReader(arc.blob(layer.name))
            stream = io.BufferedReader(blob, 1 << 20)
            if layer.compression == 'zstd':
                stream = zstandard.ZstdDecompressor().stream_reader(stream)
            elif layer.compression == 'gzip':
                stream = gzip.GzipFile(fileobj=stream)
            diff = _HashingReader(stream)
            yield layer, io.BufferedReader(diff, 1 << 20)
            try:
                while diff.read(1 << 20):   # what the tar reader left
                    pass
                while blob.read(1 << 20):
                    pass
            except tarstream.MALFORMED as e:
                raise arc.bad(_('layer %(l)s is corrupt: %(e)s') %
                              {'l': layer.name, 'e': e})
            if layer.diff_id and diff.sha.hexdigest() != layer.diff_id or \
                    layer.blob_digest and \
                    blob.sha.hexdigest() != layer.blob_digest:
                raise arc.bad(_('digest mismatch for layer %s') %
                              layer.name)
    finally:
        if isinstance(path_or_file, str):
            f.close()


def verify(archive, limits):
    """Read every layer once, writing nothing: digests checked while
    streaming, every member checked (:func:`tarstream.check_member`), the
    entries and the unpacked size bounded by ``limits``.  Returns the
    bytes the image unpacks to.  Refusals are ``ImageUnacceptable``."""
    counter, total = [0], [0]
    try:
        for layer, stream in layer_streams(archive, archive.path):
            tarstream.scan_layer(layer.name, stream, limits, counter, total)
    except tarstream.Refused as e:
        raise clear_exc.LayerRefused(image_id=archive.image_id,
                                     layer=e.layer, member=e.member,
                                     reason=e.reason) from None
    return total[0]
