"""docker-archive files built by hand, to carry what no tool would write."""

import gzip
import hashlib
import io
import json
import tarfile


def layer(members, gz=False):
    """A layer tar: ``members`` are TarInfo (data empty) or (name, bytes)
    or (TarInfo, bytes); gzip-compressed if ``gz``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                info, data = m, b''
            elif isinstance(m[0], tarfile.TarInfo):
                info, data = m
            else:
                info, data = tarfile.TarInfo(m[0]), m[1]
            if info.isreg():
                info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, (gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw)


def entry(name, kind='file', **attrs):
    info = tarfile.TarInfo(name)
    info.type = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE,
                 'sym': tarfile.SYMTYPE}[kind]
    info.mode = attrs.pop('mode', 0o755 if kind == 'dir' else 0o644)
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


def docker_archive(path, layers, config=None, diff_ids=None):
    """Write a docker-archive of ``layers`` (each (raw tar, stored blob),
    as :func:`layer` returns) to ``path``.  ``config`` (bytes) replaces
    the image config; ``diff_ids`` the digests it lists."""
    if diff_ids is None:
        diff_ids = [hashlib.sha256(raw).hexdigest() for raw, _b in layers]
    if config is None:
        config = json.dumps({
            'architecture': 'amd64', 'os': 'linux',
            'config': {'Cmd': ['/bin/sh']},
            'rootfs': {'type': 'layers',
                       'diff_ids': ['sha256:' + d for d in diff_ids]},
        }).encode()
    config_name = hashlib.sha256(config).hexdigest() + '.json'
    names = ['l%d/layer.tar' % i for i in range(len(layers))]
    manifest = json.dumps([{'Config': config_name, 'RepoTags': [],
                            'Layers': names}]).encode()
    with tarfile.open(path, 'w') as tar:
        for name, data in [(config_name, config)] + \
                [(n, blob) for n, (_r, blob) in zip(names, layers)] + \
                [('manifest.json', manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
