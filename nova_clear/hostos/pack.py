"""Delta packs: one file holding everything a host at N needs for M.

Layout: ``CLRPACK1``, the index length (8 bytes, little endian), the
index (canonical JSON) and the payloads back to back.  Index entries::

    {"target": sha256, "size": n, "kind": "delta"|"full",
     "source": sha256 (delta only), "offset": o, "length": l}

A pack is named by hash in the signed top manifest and every payload is
checked again against the target hash when applied.
"""

import dataclasses
import io
import os
import shutil
import struct

from nova_clear.hostos import delta as delta_mod
from nova_clear.hostos import errors
from nova_clear.hostos import manifest

MAGIC = b'CLRPACK1'
_LEN = struct.Struct('<Q')
MAX_INDEX = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PackEntry:
    target: str
    size: int
    kind: str
    source: str
    offset: int
    length: int


def write_pack(path, from_version, to_version, jobs_with_sizes):
    """Write the pack of computed ``delta.Job`` s; returns the index.

    ``jobs_with_sizes`` is [(job, source sha or '', target size)].
    """
    entries = []
    offset = 0
    for job, source, size in jobs_with_sizes:
        length = os.path.getsize(job.result_path)
        entries.append({'target': job.target, 'size': size,
                        'kind': job.kind,
                        'source': source if job.kind == delta_mod.DELTA
                        else '', 'offset': offset, 'length': length})
        offset += length
    index = manifest.canonical_json({'format': 1, 'from': from_version,
                                     'to': to_version, 'entries': entries})
    tmp = '%s.tmp.%d' % (path, os.getpid())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, 'wb') as out:
        out.write(MAGIC + _LEN.pack(len(index)) + index)
        for job, _source, _size in jobs_with_sizes:
            with open(job.result_path, 'rb') as src:
                shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return entries


class PackReader:
    """Random access to a downloaded (hash-checked) pack."""

    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            head = f.read(len(MAGIC) + _LEN.size)
            if len(head) != len(MAGIC) + _LEN.size or \
                    not head.startswith(MAGIC):
                raise errors.VerificationError('%s is not a delta pack'
                                               % path)
            (length,) = _LEN.unpack(head[len(MAGIC):])
            if length > MAX_INDEX:
                raise errors.VerificationError('pack index too large')
            doc = manifest.load_json(f.read(length), 'pack index',
                                     MAX_INDEX, errors.VerificationError)
            try:
                self.entries = {
                    e['target']: PackEntry(e['target'], e['size'],
                                           e['kind'], e['source'],
                                           e['offset'], e['length'])
                    for e in doc['entries']}
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise errors.VerificationError('corrupt pack index: %s' % e)
        self.base = len(MAGIC) + _LEN.size + length

    def get(self, target):
        return self.entries.get(target)

    def payload(self, entry):
        with open(self.path, 'rb') as f:
            f.seek(self.base + entry.offset)
            data = f.read(entry.length)
        if len(data) != entry.length:
            raise errors.VerificationError('pack truncated at %s'
                                           % entry.target)
        return data

    def stream(self, entry):
        return io.BytesIO(self.payload(entry))
