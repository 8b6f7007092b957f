"""The two console scripts: ``clear-image`` (publisher), ``clear-update``.

``clear-update`` runs as root on the host and does its root work
(ownership, xattrs) directly; ``clear-image`` needs no privileges except
for ``rootfs`` (mmdebstrap in root mode).
"""

import argparse
import datetime
import sys

from nova_clear.hostos import bake
from nova_clear.hostos import boot
from nova_clear.hostos import delta
from nova_clear.hostos import errors
from nova_clear.hostos import fetch
from nova_clear.hostos import manifest
from nova_clear.hostos import signing
from nova_clear.hostos import updater


class Progress:
    """Progress lines on stderr, at most one per step and percent."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.last = {}

    def __call__(self, step, done, total=None):
        if not isinstance(done, int) or not total:
            print('%s: %s' % (step, done), file=self.stream)
            return
        percent = 100 * done // total
        if self.last.get(step) != percent:
            self.last[step] = percent
            print('%s: %d%% (%d/%d)' % (step, percent, done, total),
                  file=self.stream, flush=True)


def _run(prog, func, args):
    try:
        return func(args) or 0
    except errors.HostOSError as e:
        print('%s: error: %s' % (prog, e), file=sys.stderr)
    except OSError as e:
        print('%s: error: %s' % (prog, e), file=sys.stderr)
    return 1


def image_main(argv=None):
    p = argparse.ArgumentParser(prog='clear-image',
                                description='Publish host OS versions.')
    sub = p.add_subparsers(dest='command', required=True)
    s = sub.add_parser('keygen', help='make an ed25519 key pair')
    s.add_argument('--key', required=True, help='private key (PEM) to write;'
                   ' the public key goes to KEY.pub')
    s = sub.add_parser('rootfs', help='build a root tree with mmdebstrap')
    s.add_argument('--dest', required=True)
    s.add_argument('--packages', default='',
                   help='comma-separated Debian packages to include')
    s.add_argument('--compute-host', action='store_true',
                   help='include what a Clear Containers compute host '
                        'needs (QEMU, libvirt, kernel, busybox-static, ...)')
    s.add_argument('--suite', default='bookworm')
    s.add_argument('--mirror')
    s = sub.add_parser('bake', help='publish a root tree as version N')
    s.add_argument('--version', type=int, required=True)
    s.add_argument('--rootfs', required=True)
    s.add_argument('--content', required=True)
    s.add_argument('--key', required=True)
    _expiry_option(s)
    s = sub.add_parser('refresh', help='re-sign a top manifest with a new '
                       'expiry (run well within its lifetime)')
    s.add_argument('--content', required=True)
    s.add_argument('--version', type=int, help='default: latest')
    s.add_argument('--key', required=True)
    _expiry_option(s)
    s = sub.add_parser('delta', help='make the N->M delta pack')
    s.add_argument('--content', required=True)
    s.add_argument('--from', dest='from_version', type=int, required=True)
    s.add_argument('--to', dest='to_version', type=int, required=True)
    s.add_argument('--key', required=True)
    s.add_argument('--workers', type=int,
                   help='parallel diffs (default: as many as RAM allows)')
    s.add_argument('--ram-budget-mib', type=int, default=2048)
    s.add_argument('--timeout', type=int, default=600,
                   help='seconds per file before falling back to the '
                        'full file')
    s.add_argument('--window-mib', type=int,
                   default=delta.DEFAULT_WINDOW >> 20,
                   help='bsdiff window: larger files are chunked')
    _expiry_option(s)
    args = p.parse_args(argv)
    return _run('clear-image', _image_command, args)


def _expiry_option(parser):
    parser.add_argument(
        '--expires-days', type=_positive_days,
        default=manifest.DEFAULT_LIFETIME.days,
        help='days until the signed top manifest expires; hosts refuse it '
             'after that (default %(default)s)')


def _positive_days(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % text)
    if not value > 0:
        raise argparse.ArgumentTypeError('must be positive')
    return value


def _lifetime(args):
    return datetime.timedelta(days=args.expires_days)


def _image_command(args):
    progress = Progress()
    if args.command == 'keygen':
        signing.generate_key(args.key, args.key + '.pub')
        print('wrote %s and %s.pub' % (args.key, args.key))
    elif args.command == 'rootfs':
        packages = [p for p in args.packages.split(',') if p]
        if args.compute_host:
            packages += bake.COMPUTE_HOST_PACKAGES
        bake.build_debian_rootfs(args.dest, packages, args.suite,
                                 args.mirror)
    elif args.command == 'bake':
        m = bake.bake(args.version, args.rootfs, args.content,
                      signing.load_private_key(args.key), progress,
                      _lifetime(args))
        print('baked version %d: %d entries, manifest %s'
              % (m.version, len(m.entries), m.sha256))
    elif args.command == 'refresh':
        top = bake.refresh(args.content, args.version,
                           signing.load_private_key(args.key),
                           _lifetime(args))
        print('top manifest %d re-signed, expires %s'
              % (top.version, top.expires))
    elif args.command == 'delta':
        entries = bake.make_pack(
            args.content, args.from_version, args.to_version,
            signing.load_private_key(args.key), workers=args.workers,
            ram_budget=args.ram_budget_mib << 20, timeout=args.timeout,
            window=args.window_mib << 20, progress=progress,
            lifetime=_lifetime(args))
        deltas = sum(1 for e in entries if e['kind'] == delta.DELTA)
        print('pack %d -> %d: %d files (%d deltas, %d full), %d bytes'
              % (args.from_version, args.to_version, len(entries), deltas,
                 len(entries) - deltas,
                 sum(e['length'] for e in entries)))


def _tries(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            'must be at least 1, not %d (with no try the new version would '
            'never boot)' % value)
    return value


def update_main(argv=None):
    p = argparse.ArgumentParser(prog='clear-update',
                                description='Update this host\'s OS.')
    p.add_argument('--root', default='/', help='the host root holding '
                   'versions/ and boot/')
    p.add_argument('--url', help='content directory URL')
    p.add_argument('--pubkey', help='publisher\'s ed25519 public key (PEM)')
    sub = p.add_subparsers(dest='command', required=True)
    sub.add_parser('status', help='print the version (and pending one)')
    sub.add_parser('check', help='print the newest available version')
    s = sub.add_parser('update', help='stage a newer version for next boot')
    s.add_argument('--to', type=int, help='version (default: latest)')
    s.add_argument('--tries', type=_tries, default=boot.DEFAULT_TRIES,
                   help='boots of the new version before rolling back '
                        '(at least 1, default %(default)s)')
    sub.add_parser('mark-good', help='the booted version is healthy')
    sub.add_parser('rollback', help='back to the good/previous version')
    s = sub.add_parser('verify', help='check the running snapshot')
    s.add_argument('--repair', action='store_true',
                   help='restore the paths the manifest lists; paths it '
                        'does not list are reported, never removed')
    args = p.parse_args(argv)
    return _run('clear-update', _update_command, args)


def _updater(args, remote_needed):
    remote = key = None
    if remote_needed:
        if not args.url or not args.pubkey:
            raise errors.HostOSError('--url and --pubkey are required')
        remote = fetch.Remote(args.url)
        key = signing.load_public_key(args.pubkey)
    return updater.Updater(args.root, remote, key, Progress())


def _update_command(args):
    needs_remote = args.command in ('check', 'update') or \
        (args.command == 'verify' and args.repair)
    u = _updater(args, needs_remote)
    if args.command == 'status':
        s = u.status()
        print(s.current)
        if s.pending:
            print('pending %d (%d tries left)' % (s.pending, s.tries))
        if s.booted and s.booted != s.current:
            print('booted %d' % s.booted)
        if s.failed:
            print('failed %d (rolled back)' % s.failed)
        if s.previous:
            print('previous %d' % s.previous)
    elif args.command == 'check':
        current, latest = u.check()
        print('installed %d, available %d%s' % (
            current, latest, ' (update available)' if latest > current
            else ''))
    elif args.command == 'update':
        s = u.update(args.to, args.tries)
        if s.pending:
            print('version %d staged: boots next (%d tries)'
                  % (s.pending, s.tries))
        else:
            print('version %d installed' % s.current)
    elif args.command == 'mark-good':
        print('version %d is good' % u.mark_good().current)
    elif args.command == 'rollback':
        s = u.rollback()
        print('next boot: version %d' % s.current)
    elif args.command == 'verify':
        version, problems, extras, refused = u.verify(args.repair)
        for path, reason in refused:
            print('%s: repair refused: %s' % (path, reason))
        for path, reason in problems:
            print('%s: %s' % (path, reason))
        for path in extras:
            print('%s: not in the manifest (kept)' % path)
        summary = 'clean' if not problems else '%d problems' % len(problems)
        if extras:
            summary += ', %d paths not in the manifest (kept)' % len(extras)
        print('version %d: %s' % (version, summary))
        return 1 if problems else 0
