"""Git repositories for devstack's ``GIT_BASE``, made from what PyPI has.

Devstack clones every service it installs (``$GIT_BASE/openstack/nova.git``
…) and installs it in develop mode; only PyPI and Debian's mirror are
reachable here.  The releases' sdists on PyPI hold every file of their git
tree (pbr puts them there, devstack/ plugin directories included), so a
repository with one commit of an unpacked sdist, tagged with its version
(pbr then versions it as that release), is the release's tree.

- services (nova, keystone …): the versions ``constraints.txt`` pins, the
  ones the all-in-one runs;
- ``requirements``: openstack-requirements' tools (``edit-constraints``)
  with ``upper-constraints.txt`` = ``constraints.txt`` and a
  ``global-requirements.txt`` naming the same packages unpinned;
- ``x/nova-clear``: this project's committed HEAD, as branch master;
- ``os-test-images``: not on PyPI, so a stand-in (``OS_TEST_IMAGES``):
  devstack's ``lib/tempest`` clones it and runs ``tox -egenerate`` for
  tempest's ``[image] images_manifest_file``, read only by the image
  format tests (``tempest.api.image.v2.test_images_formats``), which the
  Zuul job's selection does not run; the stand-in's manifest lists no
  images, so tempest generates none of those tests;
- devstack itself from the snapshot tarball, in ``/opt/stack/devstack``.
"""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request

from tools.devstack_check import settings

GIT = ['git', '-c', 'user.name=nova-clear devstack-check',
       '-c', 'user.email=devstack-check@nova-clear.invalid',
       '-c', 'init.defaultBranch=master', '-c', 'advice.detachedHead=false']

# global-requirements entries devstack's pip_install_gr asks for by name
# that constraints.txt does not pin (the all-in-one does not use them).
REQUIREMENTS_TOOLS_PIN = 'setuptools<81 # pkg_resources (nova-clear)\n'
PYPI_JSON = 'https://pypi.org/pypi/%s/json'

EXTRA_GLOBAL_REQUIREMENTS = ('python-memcached', 'testrepository', 'psutil',
                             'osc-placement', 'setuptools')


def pins(path=settings.CONSTRAINTS):
    """{canonical name: version} from a constraints file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split('#')[0].split(';')[0].strip()
            if '===' in line:
                name, version = line.split('===', 1)
            elif '==' in line:
                name, version = line.split('==', 1)
            else:
                continue
            out[canonical(name)] = version.strip()
    return out


def canonical(name):
    return name.strip().lower().replace('_', '-').replace('.', '-')


def service_versions(constraints=None, tempest_version=None):
    """[(repo, pypi name, version)] for the services devstack clones."""
    found = pins(constraints or settings.CONSTRAINTS)
    if tempest_version is None:
        tempest_version = aio_tempest_version()
    found['tempest'] = tempest_version
    out = []
    for repo, pypi in settings.SERVICE_REPOS:
        if canonical(pypi) not in found:
            raise ValueError('%s is not pinned in %s' % (pypi, constraints))
        out.append((repo, pypi, found[canonical(pypi)]))
    return out


def aio_tempest_version(path=os.path.join(settings.PROJECT, 'tools', 'aio',
                                          'tempest.py')):
    """The all-in-one's tempest pin (TEMPEST_VERSION), read from its
    source: importing tools.aio needs the all-in-one's environment."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
                getattr(node.targets[0], 'id', None) == 'TEMPEST_VERSION'):
            return ast.literal_eval(node.value)
    raise ValueError('no TEMPEST_VERSION in %s' % path)


def global_requirements(constraints_text):
    """global-requirements.txt: every constrained package at least at its
    pinned version, named as devstack looks them up (``glance-store``:
    underscores as hyphens), and the few devstack asks for that are not
    pinned (``>=0``: devstack refuses an entry without a specifier)."""
    entries = {}
    for line in constraints_text.splitlines():
        line = line.split('#')[0].split(';')[0].strip()
        if '==' in line:
            name, version = line.split('==', 1)
            entries[name.strip().replace('_', '-')] = '>=' + version.strip(
                '= ')
    known = {canonical(n) for n in entries}
    for name in EXTRA_GLOBAL_REQUIREMENTS:
        if canonical(name) not in known:
            entries[name] = '>=0'
    return ''.join('%s%s  # nova-clear constraints.txt\n' % (n, entries[n])
                   for n in sorted(entries, key=canonical))


def sdist(name, version):
    """The sdist of name==version from PyPI (downloaded once into the
    cache): its URL and digest from PyPI's JSON API, no build."""
    os.makedirs(settings.SDISTS, exist_ok=True)
    with urllib.request.urlopen(PYPI_JSON % name, timeout=60) as r:
        files = json.load(r)['releases'].get(version, [])
    sdists = [u for u in files if u['packagetype'] == 'sdist']
    if not sdists:
        raise RuntimeError('PyPI has no sdist of %s==%s' % (name, version))
    entry = sdists[0]
    path = os.path.join(settings.SDISTS, entry['filename'])
    if not os.path.exists(path):
        # a mirror of PyPI may give URLs relative to the JSON's
        url = urllib.parse.urljoin(PYPI_JSON % name, entry['url'])
        with urllib.request.urlopen(url, timeout=300) as r:
            data = r.read()
        if hashlib.sha256(data).hexdigest() != entry['digests']['sha256']:
            raise RuntimeError('%s: sha256 differs from PyPI\'s'
                               % url)
        with open(path + '.tmp', 'wb') as f:
            f.write(data)
        os.rename(path + '.tmp', path)
    return path


def unpack(tarball, dest):
    os.makedirs(dest)
    # GNU tar: no absolute names, no '..' (Python 3.11.2 has no filters)
    subprocess.run(['tar', '--no-same-owner', '-xzf', tarball, '-C', dest],
                   check=True)
    (top,) = os.listdir(dest)
    return os.path.join(dest, top)


def commit_tree(tree, bare, tag=None, message='release tree'):
    """Make ``bare`` a repository whose master is ``tree``'s files."""
    subprocess.run(GIT + ['init', '-q', tree], check=True)
    subprocess.run(GIT + ['-C', tree, 'add', '-A', '-f', '.'], check=True)
    subprocess.run(GIT + ['-C', tree, 'commit', '-q', '-m', message],
                   check=True)
    if tag:
        subprocess.run(GIT + ['-C', tree, 'tag', '-a', '-m', tag, tag],
                       check=True)
    if os.path.exists(bare):
        shutil.rmtree(bare)
    subprocess.run(GIT + ['clone', '-q', '--bare', tree, bare], check=True)


def make_all(root=settings.ROOT):
    """Every repository under ``root``'s GIT_BASE; returns their paths."""
    base = os.path.join(root, settings.GIT_BASE.lstrip('/'))
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        for repo, pypi, version in service_versions():
            tree = unpack(sdist(pypi, version), os.path.join(tmp, repo))
            # PKG-INFO versions a tree without git; the tag versions it
            # with git, and pbr must not see two answers
            bare = os.path.join(base, 'openstack', repo + '.git')
            commit_tree(tree, bare, tag=version,
                        message='%s %s from its PyPI sdist' % (pypi, version))
            made.append(bare)
        name, version = settings.REQUIREMENTS_SDIST
        tree = unpack(sdist(name, version), os.path.join(tmp, 'requirements'))
        with open(settings.CONSTRAINTS) as f:
            constraints = f.read()
        with open(os.path.join(tree, 'upper-constraints.txt'), 'w') as f:
            f.write(constraints)
        with open(os.path.join(tree, 'global-requirements.txt'), 'w') as f:
            f.write(global_requirements(constraints))
        # its edit-constraints imports pkg_resources, which setuptools 81
        # and later no longer have
        with open(os.path.join(tree, 'requirements.txt'), 'a') as f:
            f.write(REQUIREMENTS_TOOLS_PIN)
        bare = os.path.join(base, 'openstack', 'requirements.git')
        commit_tree(tree, bare, message='requirements: %s %s tools, '
                    'nova-clear constraints' % (name, version))
        made.append(bare)
        made.append(make_os_test_images(base, tmp))
        bare = os.path.join(base, 'x', 'nova-clear.git')
        if os.path.exists(bare):
            shutil.rmtree(bare)
        subprocess.run(GIT + ['clone', '-q', '--bare', settings.PROJECT,
                              bare], check=True)
        head = subprocess.run(['git', '-C', settings.PROJECT, 'rev-parse',
                               'HEAD'], check=True, text=True,
                              stdout=subprocess.PIPE).stdout.strip()
        subprocess.run(GIT + ['-C', bare, 'branch', '-f', 'master', head],
                       check=True)
        subprocess.run(GIT + ['-C', bare, 'symbolic-ref', 'HEAD',
                              'refs/heads/master'], check=True)
        made.append(bare)
    return made


# The os-test-images stand-in: what devstack's lib/tempest uses of it
OS_TEST_IMAGES = {
    'README': (
        'A stand-in for openstack/os-test-images made by nova-clear\'s\n'
        'tools/devstack-check: the real project is not on PyPI and only\n'
        'PyPI and Debian are reachable here.  tox -egenerate writes\n'
        'images/manifest.yaml with no images: tempest\'s image format\n'
        'tests, outside the Zuul job\'s selection, are then not made.\n'),
    'tox.ini': (
        '[tox]\nskipsdist = True\nenvlist = generate\n\n'
        '[testenv]\nbasepython = python3\n'
        'commands = python3 generate.py\n'),
    'generate.py': (
        '"""Writes images/manifest.yaml with no images (see README)."""\n'
        'import os\n\n'
        'os.makedirs(\'images\', exist_ok=True)\n'
        'with open(os.path.join(\'images\', \'manifest.yaml\'), \'w\') as f:\n'
        '    f.write(\'images: []\\n\')\n'),
}


def make_os_test_images(base, tmp):
    tree = os.path.join(tmp, 'os-test-images')
    os.makedirs(tree)
    for name, text in OS_TEST_IMAGES.items():
        with open(os.path.join(tree, name), 'w') as f:
            f.write(text)
    bare = os.path.join(base, 'openstack', 'os-test-images.git')
    commit_tree(tree, bare, message='os-test-images stand-in '
                '(tools/devstack-check)')
    return bare


def unpack_devstack(root=settings.ROOT):
    dest = os.path.join(root, settings.STACK_HOME.lstrip('/'))
    os.makedirs(dest, exist_ok=True)
    subprocess.run(['tar', '-xzf', settings.DEVSTACK_TARBALL, '-C', dest],
                   check=True)
    return os.path.join(dest, 'devstack')
