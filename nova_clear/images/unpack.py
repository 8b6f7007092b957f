"""The unpacking child: applies a container image's layers inside its
work directory, confined there.

The privsep daemon (:func:`nova_clear.privsep.build_rootfs`) runs it as
``unshare --mount --propagation private python -m nova_clear.images.unpack
--archive-fd A --root-fd R`` with the request as JSON on stdin.  It reads
the archive through the inherited descriptor, ``chroot``\\ s into the work
directory (so even a path that escaped every check of :mod:`.layers` would
resolve inside it) and only then reads any layer.  It prints one JSON line:
``{"content_bytes", "entries", "peak_rss_kib"}``, or ``{"refused": msg}``
(exit 3) for an unacceptable image, ``{"enospc": msg}`` (exit 4) when the
cache's file system is full.
"""

import argparse
import errno
import json
import os
import resource
import sys

from nova import exception

from nova_clear.images import layers
from nova_clear.images import oci
from nova_clear.images import tarstream

EXIT_REFUSED = 3
EXIT_ENOSPC = 4


def _reply(doc, code):
    sys.stdout.write(json.dumps(doc) + '\n')
    sys.stdout.flush()
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(prog='nova-clear-unpack')
    parser.add_argument('--archive-fd', type=int, required=True)
    parser.add_argument('--root-fd', type=int, required=True)
    args = parser.parse_args(argv)
    request = json.loads(sys.stdin.read())
    limits = tarstream.Limits(**request['limits'])
    archive_file = os.fdopen(args.archive_fd, 'rb')
    try:
        archive = oci.open_archive(archive_file, request['image_id'])
        os.fchdir(args.root_fd)
        os.chroot('.')
        os.chdir('/')
        os.close(args.root_fd)
        applier = layers.LayerApplier('/', request['image_id'], limits,
                                      chown=request.get('chown', True))
        for layer, stream in oci.layer_streams(archive, archive_file):
            applier.apply(layer.name, stream)
        applier.finish()
    except exception.ImageUnacceptable as e:
        return _reply({'refused': str(e)}, EXIT_REFUSED)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _reply({'enospc': str(e)}, EXIT_ENOSPC)
        raise
    return _reply({'content_bytes': applier.total,
                   'entries': applier.entries,
                   'peak_rss_kib': resource.getrusage(
                       resource.RUSAGE_SELF).ru_maxrss}, 0)


if __name__ == '__main__':
    sys.exit(main())
