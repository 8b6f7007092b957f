"""Read container image archives: ``docker save`` (docker-archive) and OCI
image-layout tarballs.

:func:`open_archive` validates the structure, the manifest and the config
against the specs and returns an :class:`ImageArchive` whose layers are
read (and their digests checked) while they are applied.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile

import zstandard

from nova import exception

from nova_clear.i18n import _

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


class InvalidContainerImage(exception.ImageUnacceptable):
    msg_fmt = _('Image %(image_id)s is unacceptable: not a valid container '
                'image: %(reason)s')


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
    try:
        with tarfile.open(path, 'r:') as tar:
            names = set()
            for i, member in enumerate(tar):
                names.add(member.name.lstrip('./'))
                if i > 10000:
                    break
    except (tarfile.TarError, OSError, EOFError):
        return False
    return 'oci-layout' in names and 'index.json' in names or \
        'manifest.json' in names


def _digest_hex(value, what, image_id):
    m = _DIGEST.match(value or '')
    if not m:
        raise InvalidContainerImage(
            image_id=image_id, reason=_('%(what)s has no valid sha256 '
                                        'digest (%(v)r)') %
            {'what': what, 'v': value})
    return m.group(1)


class _Archive:
    def __init__(self, path, image_id):
        self.path = path
        self.image_id = image_id
        try:
            self.tar = tarfile.open(path, 'r:')
            self.members = {m.name.lstrip('./').lstrip('/'): m
                            for m in self.tar.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidContainerImage(
                image_id=image_id,
                reason=_('malformed tar archive: %s') % e)

    def bad(self, reason):
        return InvalidContainerImage(image_id=self.image_id, reason=reason)

    def read(self, name, expected_hex=None):
        member = self.members.get(name)
        if member is None or not member.isfile():
            raise self.bad(_('%s is missing') % name)
        data = self.tar.extractfile(member).read()
        if expected_hex and hashlib.sha256(data).hexdigest() != expected_hex:
            raise self.bad(_('digest mismatch for %s') % name)
        return data

    def json(self, name, expected_hex=None):
        try:
            return json.loads(self.read(name, expected_hex))
        except ValueError as e:
            raise self.bad(_('%(n)s is not valid JSON: %(e)s') %
                           {'n': name, 'e': e})


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
    try:
        config = json.loads(config_data)
    except ValueError as e:
        raise arc.bad(_('the image config is not JSON: %s') % e)
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
    head = arc.tar.extractfile(arc.members[name]).read(4)
    if head[:2] == b'\x1f\x8b':
        return 'gzip'
    if head == b'\x28\xb5\x2f\xfd':
        return 'zstd'
    return None


def _open_oci(arc):
    layout = arc.json('oci-layout')
    if layout.get('imageLayoutVersion') != '1.0.0':
        raise arc.bad(_('unsupported imageLayoutVersion %r') %
                      layout.get('imageLayoutVersion'))
    index = arc.json('index.json')
    manifests = index.get('manifests') if isinstance(index, dict) else None
    if not manifests:
        raise arc.bad(_('index.json lists no manifest'))
    desc = manifests[0]
    if desc.get('mediaType') == OCI_INDEX:
        raise arc.bad(_('nested image indexes are not supported'))
    if desc.get('mediaType') not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise arc.bad(_('unknown manifest media type %r') %
                      desc.get('mediaType'))
    mhex = _digest_hex(desc.get('digest'), 'the manifest', arc.image_id)
    manifest = arc.json('blobs/sha256/' + mhex, mhex)
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
        mtype = desc.get('mediaType')
        if mtype not in LAYER_TYPES:
            raise arc.bad(_('unknown layer media type %r') % mtype)
        lhex = _digest_hex(desc.get('digest'), 'a layer', arc.image_id)
        name = 'blobs/sha256/' + lhex
        if name not in arc.members:
            raise arc.bad(_('layer blob %s is missing') % name)
        layers.append(Layer(name, LAYER_TYPES[mtype], lhex, diff_id))
    return ImageArchive('oci-layout', chex, config, layers, arc.path,
                        arc.image_id)


def open_archive(path, image_id):
    """Validate the archive at ``path``; return an :class:`ImageArchive`."""
    arc = _Archive(path, image_id)
    try:
        if 'oci-layout' in arc.members:
            return _open_oci(arc)
        if 'manifest.json' in arc.members:
            return _open_docker(arc)
        raise arc.bad(_('neither an OCI image layout (oci-layout, '
                        'index.json) nor a docker save archive '
                        '(manifest.json)'))
    finally:
        arc.tar.close()


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


def iter_layers(archive):
    """Yield (layer, tarfile) in order.

    Digests are checked after each layer has been read completely (the
    caller must consume the tar).
    """
    with tarfile.open(archive.path, 'r:') as outer:
        members = {m.name.lstrip('./').lstrip('/'): m for m in outer}
        for layer in archive.layers:
            blob = _HashingReader(outer.extractfile(members[layer.name]))
            stream = io.BufferedReader(blob, 1 << 20)
            if layer.compression == 'zstd':
                stream = zstandard.ZstdDecompressor().stream_reader(stream)
            elif layer.compression == 'gzip':
                stream = gzip.GzipFile(fileobj=stream)
            diff = _HashingReader(stream)
            with tarfile.open(fileobj=io.BufferedReader(diff, 1 << 20),
                              mode='r|') as tar:
                yield layer, tar
            # Drain what the tar reader left (padding) before hashing.
            while diff.read(1 << 20):
                pass
            while blob.read(1 << 20):
                pass
            if layer.diff_id and diff.sha.hexdigest() != layer.diff_id:
                raise InvalidContainerImage(
                    image_id=archive.image_id,
                    reason=_('digest mismatch for layer %s') % layer.name)
            if layer.blob_digest and blob.sha.hexdigest() != \
                    layer.blob_digest:
                raise InvalidContainerImage(
                    image_id=archive.image_id,
                    reason=_('digest mismatch for layer %s') % layer.name)
