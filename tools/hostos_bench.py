#!/usr/bin/env python3
"""Benchmark of host OS deltas on real public binaries (not a test).

For each pair of files (two patch releases of a wheel from PyPI, two
versions of a Debian package), in the same run: delta size of
nova-clear's format (bsdiff4 streams + zstd), classic bsdiff4 (bz2),
``xdelta3 -9`` and ``zstd -19 --patch-from``, and the zstd full file;
diff time and peak RSS of each tool (each in its own process); apply
time and throughput.  Then a whole-tree pack (``clear-image`` bake +
delta of both wheels unpacked) against the compressed new tree.

Writes ``hostos-bench.json`` and ``hostos-bench.png`` into ``--out``.
Needs: pip, apt-get, xdelta3, zstd, GNU time, matplotlib
(``tools/hostos-bench``).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

WHEELS = [
    ('numpy', '2.1.2', '2.1.3', '_multiarray_umath.cpython-311-x86_64'),
    ('cryptography', '43.0.1', '43.0.3', '_rust.abi3.so'),
]
DEBS = [
    ('libssl3', '3.0.20-1~deb12u2', '3.0.22-1~deb12u2', 'libcrypto.so.3'),
]
TOOLS = ('clear', 'bsdiff4-bz2', 'xdelta3-9', 'zstd-patch-from', 'zstd-full')


def run_measured(cmd):
    """(seconds, peak RSS in MiB) of a command.

    GNU time forks the command from its own small process: a child of
    this (large) Python process would inherit its RSS in ``ru_maxrss``.
    """
    with tempfile.NamedTemporaryFile('r') as out:
        start = time.monotonic()
        subprocess.run(['/usr/bin/time', '-f', '%M', '-o', out.name] + cmd,
                       stdout=subprocess.DEVNULL, check=True)
        elapsed = time.monotonic() - start
        return elapsed, int(out.read().split()[-1]) / 1024.0


def _self(*args):
    return [sys.executable, os.path.abspath(__file__), '--child'] + \
        list(args)


def child(args):
    """Work done in a measured child process."""
    import bsdiff4

    from nova_clear.hostos import delta
    what, old, new, out = args
    with open(old, 'rb') as f:
        old_data = f.read()
    if what == 'clear-apply':
        with open(new, 'rb') as f:
            patch = f.read()
        start = time.monotonic()
        data = delta.apply_delta(old_data, patch, 1 << 34)
        with open(out + '.seconds', 'w') as f:
            f.write('%f' % (time.monotonic() - start))
    else:
        with open(new, 'rb') as f:
            new_data = f.read()
        if what == 'clear':
            data = delta.make_delta(old_data, new_data)
        else:
            data = bsdiff4.diff(old_data, new_data)
    with open(out, 'wb') as f:
        f.write(data)


def download_wheel(name, version, work):
    dest = os.path.join(work, '%s-%s' % (name, version))
    os.makedirs(dest, exist_ok=True)
    if not glob.glob(os.path.join(dest, '*.whl')):
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q',
                        '--no-deps', '--only-binary=:all:',
                        '--platform', 'manylinux2014_x86_64',
                        '--python-version', '3.11', '-d', dest,
                        '%s==%s' % (name, version)], check=True)
    tree = os.path.join(dest, 'tree')
    if not os.path.isdir(tree):
        with zipfile.ZipFile(glob.glob(os.path.join(dest, '*.whl'))[0]) as z:
            z.extractall(tree)
    return tree


def download_deb(name, version, work):
    dest = os.path.join(work, '%s-%s' % (name, version.replace('~', '_')))
    os.makedirs(dest, exist_ok=True)
    if not glob.glob(os.path.join(dest, '*.deb')):
        subprocess.run(['apt-get', 'download', '-q',
                        '%s=%s' % (name, version)], cwd=dest, check=True,
                       capture_output=True)
    tree = os.path.join(dest, 'tree')
    if not os.path.isdir(tree):
        subprocess.run(['dpkg-deb', '-x',
                        glob.glob(os.path.join(dest, '*.deb'))[0], tree],
                       check=True)
    return tree


def find(tree, fragment):
    for d, _dirs, files in os.walk(tree):
        for f in files:
            if fragment in f and not os.path.islink(os.path.join(d, f)):
                return os.path.join(d, f)
    raise RuntimeError('%s not in %s' % (fragment, tree))


def bench_pair(label, old, new, work):
    out = os.path.join(work, label.replace(' ', '_'))
    os.makedirs(out, exist_ok=True)
    new_size = os.path.getsize(new)
    result = {'case': label, 'old_bytes': os.path.getsize(old),
              'new_bytes': new_size, 'tools': {}}
    cmds = {
        'clear': _self('clear', old, new, out + '/clear'),
        'bsdiff4-bz2': _self('bsdiff4', old, new, out + '/bsdiff4'),
        'xdelta3-9': ['xdelta3', '-9', '-e', '-f', '-s', old, new,
                      out + '/xdelta3'],
        'zstd-patch-from': ['zstd', '-q', '-f', '-19', '--patch-from=' + old,
                            new, '-o', out + '/zstdpf'],
        'zstd-full': ['zstd', '-q', '-f', '-19', new, '-o',
                      out + '/zstdfull'],
    }
    files = dict(zip(TOOLS, ('clear', 'bsdiff4', 'xdelta3', 'zstdpf',
                             'zstdfull')))
    for tool in TOOLS:
        seconds, rss = run_measured(cmds[tool])
        size = os.path.getsize(os.path.join(out, files[tool]))
        result['tools'][tool] = {
            'bytes': size, 'percent_of_new': 100.0 * size / new_size,
            'diff_seconds': round(seconds, 3), 'peak_rss_mib': round(rss, 1)}
        print('%-28s %-16s %6.2f %% %7.2f s %7.0f MiB'
              % (label, tool, 100.0 * size / new_size, seconds, rss),
              flush=True)
    applies = {
        'clear': _self('clear-apply', old, out + '/clear', out + '/new1'),
        'xdelta3-9': ['xdelta3', '-d', '-f', '-s', old, out + '/xdelta3',
                      out + '/new2'],
        'zstd-patch-from': ['zstd', '-q', '-f', '-d',
                            '--patch-from=' + old, out + '/zstdpf', '-o',
                            out + '/new3'],
    }
    for tool, cmd in applies.items():
        seconds, rss = run_measured(cmd)
        t = result['tools'][tool]
        t['apply_seconds'] = round(seconds, 3)
        t['apply_mib_per_s'] = round(new_size / seconds / (1 << 20), 1)
        t['apply_peak_rss_mib'] = round(rss, 1)
    with open(new, 'rb') as a, open(out + '/new1', 'rb') as b:
        if a.read() != b.read():
            raise RuntimeError('clear delta did not rebuild %s' % label)
    with open(out + '/new1.seconds') as f:
        seconds = float(f.read())
    # Without the Python start-up and imports the process time includes.
    result['tools']['clear']['apply_mib_per_s_in_process'] = round(
        new_size / seconds / (1 << 20), 1)
    return result


def bench_tree(label, old_tree, new_tree, work):
    """Whole trees through clear-image: pack size vs compressed tree."""
    from nova_clear.hostos import bake
    from nova_clear.hostos import signing
    from nova_clear.hostos import store
    base = os.path.join(work, 'tree-' + label)
    os.makedirs(base, exist_ok=True)
    keyfile = os.path.join(base, 'key')
    if not os.path.exists(keyfile):
        signing.generate_key(keyfile, keyfile + '.pub')
    key = signing.load_private_key(keyfile)
    content = tempfile.mkdtemp(dir=base)
    bake.bake(1, old_tree, content, key)
    new = bake.bake(2, new_tree, content, key)
    start = time.monotonic()
    entries = bake.make_pack(content, 1, 2, key)
    seconds = time.monotonic() - start
    pack = os.path.getsize(os.path.join(content, store.pack_relpath(1, 2)))
    full = sum(os.path.getsize(os.path.join(content, store.object_relpath(
        e.content))) for e in {f.content: f for f in new.files()}.values())
    raw = sum(e.size for e in new.files())
    return {'case': label + ' (whole tree)', 'new_tree_bytes': raw,
            'compressed_tree_bytes': full, 'pack_bytes': pack,
            'pack_percent_of_tree': round(100.0 * pack / raw, 2),
            'files_changed': len(entries),
            'deltas': sum(1 for e in entries if e['kind'] == 'delta'),
            'pack_seconds': round(seconds, 2)}


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(TOOLS)
    for i, tool in enumerate(TOOLS):
        xs = [j + i * width for j in range(len(results))]
        ax1.bar(xs, [r['tools'][tool]['percent_of_new'] for r in results],
                width, label=tool)
        ax2.bar(xs, [r['tools'][tool]['diff_seconds'] for r in results],
                width, label=tool)
    for ax, title in ((ax1, 'delta size, % of new file (lower is better)'),
                      (ax2, 'diff time, s (one process each)')):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
        ax.set_xticklabels([r['case'] for r in results], fontsize=8)
        ax.set_title(title)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--child']:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='bench-results')
    p.add_argument('--work', default='/var/tmp/hostos-bench',
                   help='downloads and intermediate files (kept)')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    results, trees = [], []
    for name, v1, v2, fragment in WHEELS:
        t1 = download_wheel(name, v1, args.work)
        t2 = download_wheel(name, v2, args.work)
        results.append(bench_pair('%s %s->%s' % (name, v1, v2),
                                  find(t1, fragment), find(t2, fragment),
                                  args.work))
        trees.append(bench_tree('%s-%s-%s' % (name, v1, v2), t1, t2,
                                args.work))
    for name, v1, v2, fragment in DEBS:
        t1 = download_deb(name, v1, args.work)
        t2 = download_deb(name, v2, args.work)
        results.append(bench_pair('%s %s->%s' % (name, v1.split('-')[0],
                                                 v2.split('-')[0]),
                                  find(t1, fragment), find(t2, fragment),
                                  args.work))
    doc = {'files': results, 'trees': trees,
           'machine': {'cpus': os.cpu_count(), 'python': sys.version}}
    with open(os.path.join(args.out, 'hostos-bench.json'), 'w') as f:
        json.dump(doc, f, indent=2)
    plot(results, os.path.join(args.out, 'hostos-bench.png'))
    for t in trees:
        print('%(case)s: pack %(pack_bytes)d bytes = %(pack_percent_of_tree)s '
              '%% of the new tree (%(new_tree_bytes)d bytes; compressed '
              'full files %(compressed_tree_bytes)d), %(deltas)d deltas of '
              '%(files_changed)d changed files, %(pack_seconds)s s' % t)
    return 0


if __name__ == '__main__':
    sys.exit(main())
