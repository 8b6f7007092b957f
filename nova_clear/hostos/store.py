"""The publisher's content store: static files any web server can serve.

Layout of a content directory::

    latest                          newest version number (unsigned hint)
    versions/<N>/top.json           signed envelope of top manifest N
    versions/<N>/manifest.json      manifest N (hash in the top manifest)
    files/<ab>/<sha256>.zst         zstd of a file's content, by sha256
    packs/<M>/from-<N>.pack         everything a host at N needs for M

Files are written to a temporary name and renamed: readers never see a
partial file.
"""

import hashlib
import os

import zstandard

from nova_clear.hostos import errors

CHUNK = 1024 * 1024
ZSTD_LEVEL = 19


def file_sha256(path):
    """(sha256 hex, size) of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def object_relpath(sha):
    return 'files/%s/%s.zst' % (sha[:2], sha)


def top_relpath(version):
    return 'versions/%d/top.json' % version


def manifest_relpath(version):
    return 'versions/%d/manifest.json' % version


def pack_relpath(from_version, to_version):
    return 'packs/%d/from-%d.pack' % (to_version, from_version)


def write_atomic(path, data, mode=0o644):
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compressor():
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL)


def put_file(content_dir, src_path, sha):
    """Store ``src_path`` compressed under its hash (once)."""
    dest = os.path.join(content_dir, object_relpath(sha))
    if os.path.exists(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = '%s.tmp.%d' % (dest, os.getpid())
    with open(src_path, 'rb') as src, open(tmp, 'wb') as out:
        # The size lets zstd size its tables to the file (and records it).
        compressor().copy_stream(src, out, size=os.fstat(src.fileno()).st_size)
    os.replace(tmp, dest)
    return dest


def decompress_verified(src, dest_path, sha, size):
    """Decompress stream ``src`` into ``dest_path``, checking hash/size.

    Reads at most ``size`` + 1 bytes of output, so a bomb cannot fill the
    disk.  Raises VerificationError (and removes the output) on mismatch.
    Not fsynced: callers that need durability sync afterwards.
    """
    h = hashlib.sha256()
    written = 0
    try:
        with open(dest_path, 'wb') as out:
            reader = zstandard.ZstdDecompressor().stream_reader(src)
            while True:
                block = reader.read(min(CHUNK, size + 1 - written))
                if not block:
                    break
                written += len(block)
                if written > size:
                    break
                h.update(block)
                out.write(block)
    except zstandard.ZstdError as e:
        _unlink(dest_path)
        raise errors.VerificationError('corrupt compressed content %s: %s'
                                       % (sha, e))
    if written != size or h.hexdigest() != sha:
        _unlink(dest_path)
        raise errors.VerificationError(
            'content %s does not match its manifest (size %d, expected %d)'
            % (sha, written, size))


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
