"""Build the minimal guest kernel from Debian's ``linux-source`` package.

``make tinyconfig``, merge ``minimal.config`` (everything a Clear Container
uses, built in; no modules), ``make olddefconfig``, ``make bzImage``.  The
result is cached under ``<cache>/<key>/`` where the key hashes the fragment
and the source tarball, so a rebuild happens only when either changes; the
build tree is removed afterwards.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess

from nova_clear.buildtools.errors import BuildError

FRAGMENT = os.path.join(os.path.dirname(__file__), 'minimal.config')
SOURCE_GLOB = '/usr/src/linux-source-*.tar.xz'


def fragment_options(text):
    """{CONFIG_X: value} of a fragment ('n' for '# CONFIG_X is not set')."""
    opts = {}
    for line in text.splitlines():
        m = re.match(r'^(CONFIG_\w+)=(.*)$', line.strip())
        if m:
            opts[m.group(1)] = m.group(2)
        m = re.match(r'^# (CONFIG_\w+) is not set$', line.strip())
        if m:
            opts[m.group(1)] = 'n'
    return opts


def missing_options(wanted, final_config_text):
    """Options of the fragment that olddefconfig did not keep."""
    final = fragment_options(final_config_text)
    return sorted(k for k, v in wanted.items()
                  if final.get(k, 'n') != v and not (v == 'n' and k
                                                     not in final))


def find_source(pattern=SOURCE_GLOB):
    found = sorted(glob.glob(pattern))
    if not found:
        raise BuildError('no %s: install linux-source-6.1 (Debian)'
                         % pattern)
    return found[-1]


def cache_key(source, fragment_text):
    st = os.stat(source)
    h = hashlib.sha256()
    h.update(fragment_text.encode())
    h.update(('%s:%d' % (os.path.basename(source), st.st_size)).encode())
    return h.hexdigest()[:16]


def _run(cmd, cwd, log):
    log('$ ' + ' '.join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        raise BuildError('%s failed:\n%s' % (' '.join(cmd),
                                             '\n'.join(tail)))
    return proc.stdout


def build(cache_dir, jobs=None, source=None, log=print):
    """Return (bzImage path, kernel release); builds only when needed.

    Concurrent callers (test workers, several tools) wait for one build.
    """
    with open(FRAGMENT) as f:
        fragment = f.read()
    source = source or find_source()
    key = cache_key(source, fragment)
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, key + '.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cache_dir, key, fragment, source, jobs, log)


def _build_locked(cache_dir, key, fragment, source, jobs, log):
    out = os.path.join(cache_dir, key)
    image = os.path.join(out, 'bzImage')
    if os.path.exists(image):
        with open(os.path.join(out, 'release')) as f:
            return image, f.read().strip()
    work = out + '.build'
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        log('unpacking %s' % source)
        _run(['tar', '-xf', source, '-C', work, '--strip-components=1'],
             None, log)
        _run(['make', 'tinyconfig'], work, log)
        frag_path = os.path.join(work, 'nova-clear.config')
        shutil.copy(FRAGMENT, frag_path)
        _run(['scripts/kconfig/merge_config.sh', '-m', '.config',
              frag_path], work, log)
        _run(['make', 'olddefconfig'], work, log)
        with open(os.path.join(work, '.config')) as f:
            final = f.read()
        lost = missing_options(fragment_options(fragment), final)
        if lost:
            raise BuildError('the kernel configuration dropped: %s'
                             % ', '.join(lost))
        _run(['make', '-j%d' % (jobs or os.cpu_count() or 1), 'bzImage'],
             work, log)
        release = _run(['make', '-s', 'kernelrelease'], work, log).strip()
        tmp = out + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        shutil.copy(os.path.join(work, 'arch/x86/boot/bzImage'), tmp)
        shutil.copy(os.path.join(work, '.config'),
                    os.path.join(tmp, 'config'))
        with open(os.path.join(tmp, 'release'), 'w') as f:
            f.write(release + '\n')
        os.replace(tmp, out)
        return image, release
    finally:
        shutil.rmtree(work, ignore_errors=True)
