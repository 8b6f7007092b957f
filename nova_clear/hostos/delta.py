"""Binary deltas: bsdiff4 with zstd- or bz2-compressed streams, chunked.

A delta ("CLRBSZ2") holds one or more chunks.  Each chunk rebuilds one
slice of the new file from one window of the old file with bsdiff4's raw
control/diff/extra streams, each compressed with zstd or bz2, whichever
is smaller for that stream (zstd decodes much faster and often wins; on
long runs of zeros bz2 can be smaller).  Files whose old side is larger
than a window are cut into chunks, so diffing needs about 18x the window,
never 18x the file.

``best_payload`` is what the publisher runs per changed file: the smaller
of the delta and the zstd full file, the delta applied back and verified
before it is chosen.  ``compute_all`` runs it in forked workers bounded in
number (by a RAM budget), memory (RLIMIT_AS) and time; a worker that runs
out of either falls back to the full file.  Small files are diffed in
the calling process.
"""

import bz2
import dataclasses
import os
import re
import resource
import signal
import struct
import time

import bsdiff4.core
import zstandard

from nova_clear.hostos import errors

MAGIC = b'CLRBSZ2\0'
_HEAD = struct.Struct('<8sQQ')
_CHUNK = struct.Struct('<QQQQQQ3s')
ZSTD, BZ2 = b'z', b'b'
DEFAULT_WINDOW = 32 * 1024 * 1024
BSDIFF_RAM_FACTOR = 20
DELTA, FULL = 'delta', 'full'
# Files up to this size are diffed in-process (bsdiff needs ~20x).
INLINE_MAX = 256 * 1024


def _zc(data):
    return zstandard.ZstdCompressor(level=19).compress(data)


def _compress(data):
    """(codec, bytes): the smaller of zstd and bz2."""
    z, b = _zc(data), bz2.compress(data, 9)
    return (ZSTD, z) if len(z) <= len(b) else (BZ2, b)


def _decompress(codec, data, limit):
    try:
        if codec == ZSTD:
            return zstandard.ZstdDecompressor().decompress(
                data, max_output_size=limit)
        if codec == BZ2:
            d = bz2.BZ2Decompressor()
            out = d.decompress(data, max_length=limit)
            if not d.eof:
                raise ValueError('stream larger than expected or truncated')
            return out
    except (zstandard.ZstdError, ValueError, OSError, EOFError) as e:
        raise errors.VerificationError('corrupt delta stream: %s' % e)
    raise errors.VerificationError('unknown delta stream codec %r' % codec)


def _windows(old_len, new_len, window):
    """(src_off, src_len, dst_off, dst_len) per chunk of the new file."""
    if old_len <= window or new_len == 0:
        return [(0, old_len, 0, new_len)]
    step = window // 2
    out = []
    for dst_off in range(0, new_len, step):
        dst_len = min(step, new_len - dst_off)
        centre = dst_off * old_len // new_len
        src_off = max(0, min(centre - step // 2, old_len - window))
        out.append((src_off, min(window, old_len - src_off), dst_off,
                    dst_len))
    return out


def make_delta(old, new, window=DEFAULT_WINDOW):
    """Delta bytes turning ``old`` into ``new``."""
    parts = []
    chunks = _windows(len(old), len(new), window)
    for src_off, src_len, dst_off, dst_len in chunks:
        control, diff, extra = bsdiff4.core.diff(
            old[src_off:src_off + src_len], new[dst_off:dst_off + dst_len])
        packed = [_compress(x) for x in (control, diff, extra)]
        streams = [data for _codec, data in packed]
        parts.append(_CHUNK.pack(src_off, src_len, dst_len,
                                 *map(len, streams),
                                 b''.join(c for c, _data in packed)))
        parts.extend(streams)
    return _HEAD.pack(MAGIC, len(new), len(chunks)) + b''.join(parts)


class FileView:
    """Read-only slices of a file without loading it (``view[a:b]``).

    make_delta and iter_apply only ever slice one window at a time, so
    their memory follows the window, not the file.
    """

    def __init__(self, path):
        self._f = open(path, 'rb')
        self._size = os.fstat(self._f.fileno()).st_size

    def __len__(self):
        return self._size

    def __getitem__(self, key):
        start, stop, _step = key.indices(self._size)
        return os.pread(self._f.fileno(), max(0, stop - start), start)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def iter_apply(old, delta, max_size):
    """Yield the new file chunk by chunk from ``old`` and ``delta``.

    Refuses (VerificationError) anything malformed or larger than
    ``max_size``; the caller checks the hash of what it got.
    """
    try:
        magic, new_len, count = _HEAD.unpack_from(delta, 0)
    except struct.error:
        raise errors.VerificationError('truncated delta')
    if magic != MAGIC:
        raise errors.VerificationError('not a delta (bad magic)')
    if new_len > max_size:
        raise errors.VerificationError('delta output of %d bytes exceeds '
                                       'the expected %d' % (new_len, max_size))
    pos = _HEAD.size
    total = 0
    for _ in range(count):
        try:
            src_off, src_len, dst_len, lc, ld, le, codecs = \
                _CHUNK.unpack_from(delta, pos)
        except struct.error:
            raise errors.VerificationError('truncated delta')
        pos += _CHUNK.size
        if src_off + src_len > len(old) or total + dst_len > new_len or \
                pos + lc + ld + le > len(delta):
            raise errors.VerificationError('delta chunk out of bounds')
        limit = dst_len * 3 + 1024 * 1024
        control = _decompress(codecs[0:1], delta[pos:pos + lc], limit)
        diff = _decompress(codecs[1:2], delta[pos + lc:pos + lc + ld],
                           dst_len)
        extra = _decompress(codecs[2:3],
                            delta[pos + lc + ld:pos + lc + ld + le], dst_len)
        pos += lc + ld + le
        try:
            yield bsdiff4.core.patch(old[src_off:src_off + src_len],
                                     dst_len, control, diff, extra)
        except (ValueError, MemoryError) as e:
            raise errors.VerificationError('corrupt delta: %s' % e)
        total += dst_len
    if total != new_len or pos != len(delta):
        raise errors.VerificationError('delta does not add up')


def apply_delta(old, delta, max_size):
    """The new bytes from ``old`` and ``delta`` (see ``iter_apply``)."""
    return b''.join(iter_apply(old, delta, max_size))


def best_payload(old_path, new_path, result_path, window=DEFAULT_WINDOW):
    """Write the smaller of a verified delta and zstd(new); its kind.

    Files are read window by window (``FileView``); the full file is
    compressed as a stream.
    """
    full_path = result_path + '.full'
    _compress_file(new_path, full_path)
    if old_path is not None:
        with FileView(old_path) as old, FileView(new_path) as new:
            if len(old) and len(new):
                patch = make_delta(old, new, window)
                if len(patch) < os.path.getsize(full_path) and \
                        _rebuilds(old, patch, new_path):
                    with open(result_path, 'wb') as out:
                        out.write(patch)
                    os.unlink(full_path)
                    return DELTA
    os.replace(full_path, result_path)
    return FULL


def _rebuilds(old, patch, new_path):
    """Does ``patch`` applied to ``old`` give exactly ``new_path``?"""
    with open(new_path, 'rb') as f:
        for block in iter_apply(old, patch, os.fstat(f.fileno()).st_size):
            if f.read(len(block)) != block:
                return False
        return f.read(1) == b''


_VERSIONISH = re.compile(r'\d+')


def rename_key(path):
    """``path`` with every digit run replaced: versioned names collide."""
    return _VERSIONISH.sub('#', path)


def match_renames(old_paths, new_paths):
    """{new path: old path} for new paths that exist in old only renamed.

    A new path absent from the old tree matches the old path absent from
    the new tree that differs only in its digits (``6.1.0-55`` vs
    ``6.1.0-56``), when that match is unique.
    """
    old_only = set(old_paths) - set(new_paths)
    by_key = {}
    for p in old_only:
        by_key.setdefault(rename_key(p), []).append(p)
    out = {}
    for p in set(new_paths) - set(old_paths):
        candidates = by_key.get(rename_key(p), [])
        if len(candidates) == 1:
            out[p] = candidates[0]
    return out


@dataclasses.dataclass
class Job:
    """One changed file: new content ``target`` from ``source_path``."""

    target: str
    new_path: str
    source_path: str = None
    result_path: str = None
    kind: str = FULL


def workers_for(max_source_size, ram_budget, cpus=None, window=None):
    """How many diff workers fit the RAM budget (at least one)."""
    window = window or DEFAULT_WINDOW
    per = BSDIFF_RAM_FACTOR * min(max_source_size, window) + \
        4 * min(max_source_size, window) + 64 * 1024 * 1024
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(cpus, ram_budget // per))


def _worker(job, window, mem_limit):
    """Child process: write the payload of ``job``; exit 0 for a delta."""
    if mem_limit:
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    kind = best_payload(job.source_path, job.new_path, job.result_path,
                        window)
    return 0 if kind == DELTA else 3


def _vm_size():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmSize:'):
                return int(line.split()[1]) * 1024
    return 0


def compute_all(jobs, workdir, workers=1, timeout=600, mem_limit=None,
                window=DEFAULT_WINDOW, progress=None):
    """Fill ``result_path``/``kind`` of every job, in parallel processes.

    A job whose worker exceeds ``timeout`` seconds or ``mem_limit`` bytes
    of address space (on top of this process's) falls back to the full
    file, computed here with streaming zstd (constant memory).
    """
    pending = list(enumerate(jobs))
    running = {}
    done = 0
    limit = _vm_size() + mem_limit if mem_limit else None
    while pending or running:
        while pending and len(running) < workers:
            i, job = pending.pop(0)
            job.result_path = os.path.join(workdir, '%d.payload' % i)
            if _small(job):
                job.kind = best_payload(job.source_path, job.new_path,
                                        job.result_path, window)
                done += 1
                if progress:
                    progress('delta', done, len(jobs))
                continue
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _worker(job, window, limit)
                finally:
                    os._exit(code)
            running[pid] = (job, time.monotonic())
        if not running:
            continue
        pid, status = _wait_any(running, timeout)
        job, _start = running.pop(pid)
        code = os.waitstatus_to_exitcode(status) if status is not None \
            else None
        if code == 0:
            job.kind = DELTA
        elif code != 3:
            _full_payload(job)
        done += 1
        if progress:
            progress('delta', done, len(jobs))
    return jobs


def _small(job):
    """Cheap enough to diff here: no worker process, no limits needed."""
    sizes = [os.path.getsize(p) for p in (job.source_path, job.new_path)
             if p]
    return max(sizes) <= INLINE_MAX


def _wait_any(running, timeout):
    """Reap one finished child; kill and return one that overran."""
    while True:
        for pid in running:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                return pid, status
        now = time.monotonic()
        for pid, (_job, start) in running.items():
            if now - start > timeout:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return pid, None
        time.sleep(0.02)


def _full_payload(job):
    _compress_file(job.new_path, job.result_path)
    job.kind = FULL


def _compress_file(path, dest):
    with open(path, 'rb') as src, open(dest, 'wb') as out:
        zstandard.ZstdCompressor(level=19).copy_stream(
            src, out, size=os.fstat(src.fileno()).st_size)
