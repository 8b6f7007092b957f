"""``docker commit`` for Clear Containers: the instance's changes as one new
layer on top of the image's layers, written as a docker-archive.

The changes are the overlayfs upper directory on the instance's writable
disk (``upper`` ext4, directory ``/upper``, see nova_clear/guest/init.sh).
It is read without mounting anything, unprivileged, with e2fsprogs'
``debugfs`` on a copy of the disk (:func:`read_upper`): ``ls -p`` by
inode number walks the tree (owners, modes, inode numbers for hard links),
``ea_get`` finds opaque directories, ``stat`` device numbers, ``rdump``
the files' contents and symbolic links.  The OCI layer rules then say how
overlayfs' markers become tar members (:func:`layer_members`):

* a whiteout (character device 0/0) ``dir/NAME``  ->  ``dir/.wh.NAME``
* an opaque directory (xattr ``trusted.overlay.opaque=y``)  ->  the
  directory, then ``dir/.wh..wh..opq``

What the agent puts into the overlay for one boot is not the workload's
and is left out (:data:`EXCLUDED`), so are sockets and device nodes
(the layer rules refuse devices).  Extended attributes of files
(``security.capability``...) are not carried over.
"""

import copy
import dataclasses
import datetime
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile

from nova_clear.images import oci
from nova_clear.images import tarstream

UPPER = 'upper'                 # the overlay's upper dir on the disk
# what the agent writes into the overlay for one boot: its tmpfs mount
# point, the DNS servers of this boot (docker leaves out its bind-mounted
# resolv.conf the same way)
EXCLUDED = ('.nova-clear', 'etc/resolv.conf')
# the instance's key pair, copied in by the agent when the writable disk
# holds one (nova-clear/authorized_keys): never baked into an image
AGENT_KEYS = 'root/.ssh/authorized_keys'
DEBUGFS_TIMEOUT = 600


class CommitFailed(Exception):
    """The upper layer cannot be read or represented."""


@dataclasses.dataclass
class Node:
    path: str                   # relative, '/'-separated, no leading '/'
    kind: str                   # dir file symlink fifo chr blk whiteout
    mode: int = 0o644           # permission bits (with setuid/gid/sticky)
    uid: int = 0
    gid: int = 0
    mtime: float = 0
    ino: int = 0
    opaque: bool = False
    rdev: tuple = (0, 0)
    source: str = None          # host file holding the content
    linkname: str = ''          # symlink target


# -- debugfs ----------------------------------------------------------------
_HEADER = re.compile(rb'^debugfs: (\w+) <(\d+)>[^\n]*\n', re.M)
_LS_HEADER = re.compile(rb'debugfs: ls -p <(\d+)>\n')
_ENTRY = re.compile(rb'/(\d+)/([0-7]+)/(\d+)/(\d+)/([^/]*)/(\d*)/\n')
_DEVICE = re.compile(rb'Device major/minor number: ([0-9a-f]+):([0-9a-f]+)')
_OPAQUE = re.compile(rb'trusted\.overlay\.opaque \(\d+\) = "y"')


def _debugfs(image, commands, workdir):
    """Run ``commands`` in one debugfs process; its stdout (bytes)."""
    script = os.path.join(workdir, 'debugfs.cmds')
    with open(script, 'w') as f:
        f.write(''.join(c + '\n' for c in commands))
    try:
        out = subprocess.run(['debugfs', '-f', script, image],
                             capture_output=True, check=True,
                             timeout=DEBUGFS_TIMEOUT)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired,
            OSError) as e:
        raise CommitFailed('debugfs failed on %s: %s' % (image, e))
    finally:
        os.unlink(script)
    return out.stdout


def _blocks(output):
    """Split the output of commands on inodes (``stat <N>``, ``ea_get <N>
    ...``, whose output escapes what is not printable, so no line of it
    starts like a command) into ``{(command, inode): body}``."""
    heads = list(_HEADER.finditer(output))
    result = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(output)
        result[(m.group(1).decode(), int(m.group(2)))] = \
            output[m.end():end]
    return result


def parse_ls(output, pos=0):
    """``ls -p`` output from ``pos`` -> ([(ino, mode, uid, gid, name)],
    end), without ``.`` and ``..``; ends before the next command's echo.
    Parsed entry by entry: a name may hold any byte but '/' (newlines,
    text that looks like a command's echo), and a name is always taken
    whole, so nothing in it can pass for an entry or a command."""
    entries = []
    while pos < len(output):
        if output[pos:pos + 1] == b'\n':
            pos += 1
            continue
        if output.startswith(b'debugfs: ', pos):
            break
        m = _ENTRY.match(output, pos)
        if m is None:
            raise CommitFailed('unexpected debugfs output: %r' %
                               output[pos:pos + 80])
        pos = m.end()
        name = m.group(5)
        if name in (b'.', b'..'):
            continue
        entries.append((int(m.group(1)), int(m.group(2), 8),
                        int(m.group(3)), int(m.group(4)), name))
    return entries, pos


def _ls(image, inodes, workdir):
    """``{inode: entries}`` of the directories ``inodes``, one debugfs
    run."""
    output = _debugfs(image, ['ls -p <%d>' % i for i in inodes], workdir)
    result, pos = {}, 0
    while pos < len(output):
        m = _LS_HEADER.match(output, pos)
        if m is None:
            raise CommitFailed('unexpected debugfs output: %r' %
                               output[pos:pos + 80])
        result[int(m.group(1))], pos = parse_ls(output, m.end())
    return result


_KINDS = {stat.S_IFDIR: 'dir', stat.S_IFREG: 'file', stat.S_IFLNK: 'symlink',
          stat.S_IFIFO: 'fifo', stat.S_IFCHR: 'chr', stat.S_IFBLK: 'blk',
          stat.S_IFSOCK: 'socket'}


def read_upper(image, workdir):
    """The nodes of the overlay upper directory on the ext4 ``image`` (a
    copy nothing writes to any more, its journal replayed), contents
    dumped below ``workdir``; plus whether the agent copied a key pair."""
    root = _ls(image, [2], workdir).get(2, [])
    by_name = {name: (ino, mode) for ino, mode, _u, _g, name in root}
    keys = False
    spec = by_name.get(b'nova-clear')
    if spec and stat.S_ISDIR(spec[1]):
        listing = _ls(image, [spec[0]], workdir).get(spec[0], [])
        keys = any(n == b'authorized_keys' for _i, _m, _u, _g, n in listing)
    upper = by_name.get(UPPER.encode())
    if upper is None or not stat.S_ISDIR(upper[1]):
        return [], keys
    nodes = []
    level = [(upper[0], '')]
    while level:                      # one debugfs run per tree level
        out = _ls(image, [ino for ino, _p in level], workdir)
        following = []
        for ino, prefix in level:
            for cino, mode, uid, gid, name in out.get(ino, []):
                path = prefix + os.fsdecode(name)
                kind = _KINDS.get(stat.S_IFMT(mode))
                if kind is None:
                    raise CommitFailed('%s: unknown file type %o' %
                                       (path, mode))
                nodes.append(Node(path, kind, stat.S_IMODE(mode), uid, gid,
                                  ino=cino))
                if kind == 'dir':
                    following.append((cino, path + '/'))
        level = following
    _add_details(image, nodes, workdir)
    tree = os.path.join(workdir, 'tree')
    os.mkdir(tree)
    _debugfs(image, ['rdump <%d> %s' % (upper[0], tree)], workdir)
    base = os.path.join(tree, '<%d>' % upper[0])
    for node in nodes:
        host = os.path.join(base, node.path)
        if node.kind in ('dir', 'file', 'symlink'):
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                raise CommitFailed('%s was not dumped' % node.path)
            node.mtime = st.st_mtime
            if node.kind == 'file':
                node.source = host
            elif node.kind == 'symlink':
                node.linkname = os.readlink(host)
            if node.kind == 'dir' and not st.st_mode & 0o700 == 0o700:
                os.chmod(host, 0o700)   # read it, not being root
    return nodes, keys


def _add_details(image, nodes, workdir):
    """Opaque directories (xattr) and device numbers (whiteouts)."""
    dirs = {n.ino: n for n in nodes if n.kind == 'dir'}
    devs = {n.ino: n for n in nodes if n.kind in ('chr', 'blk')}
    if not dirs and not devs:
        return
    out = _blocks(_debugfs(
        image, ['ea_get <%d> trusted.overlay.opaque' % i for i in dirs] +
        ['stat <%d>' % i for i in devs], workdir))
    for ino, node in dirs.items():
        node.opaque = bool(_OPAQUE.search(out.get(('ea_get', ino), b'')))
    for ino, node in devs.items():
        m = _DEVICE.search(out.get(('stat', ino), b''))
        if m is None:
            raise CommitFailed('%s: no device number' % node.path)
        node.rdev = (int(m.group(1), 16), int(m.group(2), 16))
        if node.kind == 'chr' and node.rdev == (0, 0):
            node.kind = 'whiteout'


# -- the layer --------------------------------------------------------------
def _excluded(path, excluded):
    return any(path == e or path.startswith(e + '/') for e in excluded)


def layer_members(nodes, excluded=EXCLUDED):
    """``[(TarInfo, source path or None)]`` of the new layer, in the
    order the OCI rules apply them: parents first, a directory's opaque
    marker right after it, overlayfs whiteouts as ``.wh.NAME``; a second
    name of an inode becomes a hard link to the first."""
    members, first = [], {}
    for node in sorted(nodes, key=lambda n: n.path.split('/')):
        if _excluded(node.path, excluded):
            continue
        parent, _sep, base = node.path.rpartition('/')
        if base.startswith(tarstream.WHITEOUT):
            raise CommitFailed('%s: names starting with %s cannot be '
                               'stored in a layer' %
                               (node.path, tarstream.WHITEOUT))
        if node.kind in ('socket', 'chr', 'blk'):
            # tar has no sockets (docker skips them too); device nodes
            # other than whiteouts would be refused by the layer rules
            # when the snapshot boots (nova_clear.images.tarstream)
            continue
        if node.kind == 'whiteout':
            info = tarfile.TarInfo(
                (parent + '/' if parent else '') + tarstream.WHITEOUT + base)
            info.mode = 0o600
            info.mtime = node.mtime
            members.append((info, None))
            continue
        info = tarfile.TarInfo(node.path)
        info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
        info.mtime = int(node.mtime)
        source = None
        if node.kind != 'dir' and node.ino in first:
            info.type = tarfile.LNKTYPE
            info.linkname = first[node.ino]
        elif node.kind == 'dir':
            info.type = tarfile.DIRTYPE
        elif node.kind == 'file':
            info.type = tarfile.REGTYPE
            source = node.source
            first[node.ino] = node.path
        elif node.kind == 'symlink':
            info.type = tarfile.SYMTYPE
            info.linkname = node.linkname
        else:
            info.type = tarfile.FIFOTYPE
            first[node.ino] = node.path
        members.append((info, source))
        if node.kind == 'dir' and node.opaque:
            marker = tarfile.TarInfo(node.path + '/' + tarstream.OPAQUE)
            marker.mode = 0o600
            marker.mtime = info.mtime
            members.append((marker, None))
    return members


class _Sha256Writer(io.RawIOBase):
    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def tell(self):
        return self.size

    def write(self, b):
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b)


def write_layer(members, dest):
    """Write the uncompressed layer tar; its sha256 hex (the diff_id)."""
    with open(dest, 'wb') as f:
        out = _Sha256Writer(f)
        with tarfile.open(fileobj=out, mode='w',
                          format=tarfile.PAX_FORMAT) as tar:
            for info, source in members:
                if source is None:
                    tar.addfile(info)
                    continue
                if not os.access(source, os.R_OK):
                    os.chmod(source, 0o600)
                with open(source, 'rb') as data:
                    info.size = os.fstat(data.fileno()).st_size
                    tar.addfile(info, data)
    return out.sha.hexdigest()


# -- the image ---------------------------------------------------------------
def commit_config(config, diff_id, comment, now=None):
    """The original image config, its ``config`` (Entrypoint, Cmd, Env,
    WorkingDir, User...) unchanged, with one more layer and its history."""
    new = copy.deepcopy(config)
    created = (now or datetime.datetime.now(datetime.timezone.utc)) \
        .strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    new['created'] = created
    new.setdefault('rootfs', {'type': 'layers', 'diff_ids': []})
    new['rootfs']['diff_ids'] = list(new['rootfs'].get('diff_ids') or []) + \
        ['sha256:' + diff_id]
    history = list(new.get('history') or [])
    history.append({'created': created, 'created_by': 'nova-clear snapshot',
                    'comment': comment})
    new['history'] = history
    return new


def manifest(config_name, layer_names):
    return [{'Config': config_name, 'RepoTags': None,
             'Layers': list(layer_names)}]


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_archive(original_path, image_id, layer_path, diff_id, comment,
                  dest):
    """A docker-archive at ``dest``: the layers of the archive at
    ``original_path`` (docker-archive or OCI layout, blobs copied as
    stored), then the layer at ``layer_path``; the config of
    :func:`commit_config`.  Returns the new config's digest (hex)."""
    archive = oci.open_archive(original_path, image_id)
    config = commit_config(archive.config, diff_id, comment)
    config_data = json.dumps(config, sort_keys=True).encode()
    config_hex = hashlib.sha256(config_data).hexdigest()
    names = []
    with open(original_path, 'rb') as src, \
            tarfile.open(dest, 'w', format=tarfile.PAX_FORMAT) as tar:
        old = tarfile.open(fileobj=src, mode='r:',
                           tarinfo=tarstream.BoundedTarInfo)
        members = {m.name.lstrip('./').lstrip('/'): m for m in old}
        for layer in archive.layers:
            member = members[layer.name]
            name = '%s/layer.tar' % layer.diff_id
            info = tarfile.TarInfo(name)
            info.size, info.mode = member.size, 0o644
            tar.addfile(info, old.extractfile(member))
            names.append(name)
        name = '%s/layer.tar' % diff_id
        tar.add(layer_path, arcname=name, recursive=False,
                filter=_plain)
        names.append(name)
        _add_bytes(tar, config_hex + '.json', config_data)
        _add_bytes(tar, 'manifest.json', json.dumps(
            manifest(config_hex + '.json', names)).encode())
    return config_hex


def _plain(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ''
    info.mode = 0o644
    return info


def commit(original_path, image_id, upper_image, workdir, dest, comment):
    """The whole commit: the upper layer of ``upper_image`` (a private
    copy) on the image of ``original_path``, written to ``dest``.
    Returns ``{'config_digest', 'diff_id', 'members'}``."""
    nodes, keys = read_upper(upper_image, workdir)
    excluded = EXCLUDED + ((AGENT_KEYS,) if keys else ())
    members = layer_members(nodes, excluded)
    layer = os.path.join(workdir, 'layer.tar')
    diff_id = write_layer(members, layer)
    config_hex = write_archive(original_path, image_id, layer, diff_id,
                               comment, dest)
    return {'config_digest': config_hex, 'diff_id': diff_id,
            'members': len(members)}
