"""Write nova-clear's settings into a nova.conf.

``nova-clear-configure --config-file /etc/nova/nova-cpu.conf`` sets
``[DEFAULT] compute_driver = clear.ClearDriver`` and the ``[clear]``
options given on the command line.  The one piece of configuration code
that ``tools/allinone`` and ``devstack/plugin.sh`` both call.

The file is edited line by line like devstack's ``iniset``: comments,
order, unknown sections and repeated (multi-valued) options elsewhere in
the file are kept.  Every value is checked against the option's type and
choices first; on bad input nothing is written.  The new file replaces the
old one atomically with the same mode, owner and group (nova-compute runs
unprivileged and must still read a root-owned ``root:nova 0640`` file).
"""

import argparse
import os
import re
import sys
import tempfile

from nova_clear import conf as clear_conf

DRIVER = 'clear.ClearDriver'
_SECTION = re.compile(r'^\s*\[([^\]]+)\]\s*$')
_SEEN = object()


class ConfigError(Exception):
    """A setting that cannot be written; nova-clear-configure reports it.
    Not Nova-facing: the deployer's error, raised to whoever configures."""


def _key_of(line):
    s = line.strip()
    if not s or s[0] in '#;' or '=' not in s:
        return None
    return s.split('=', 1)[0].strip()


def set_options(lines, section, values):
    """Return ``lines`` with ``section``'s options set to ``values``.

    An option already present (once) is replaced in place; a missing one is
    appended at the end of its section; a missing section is appended.
    """
    out = list(lines)
    pending = dict(values)
    start = end = None
    for i, line in enumerate(out):
        m = _SECTION.match(line)
        if m:
            if start is not None and end is None:
                end = i
            if m.group(1).strip() == section and start is None:
                start = i
    if start is not None and end is None:
        end = len(out)
    if start is None:
        if out and out[-1].strip():
            out.append('\n')
        out.append('[%s]\n' % section)
        start, end = len(out) - 1, len(out)
    i = start + 1
    while i < end:
        key = _key_of(out[i])
        if key in pending:
            if pending[key] is _SEEN:
                # a repeated key: keep only the first, now set
                del out[i]
                end -= 1
                continue
            out[i] = '%s = %s\n' % (key, pending[key])
            pending[key] = _SEEN
        i += 1
    # insert the rest after the last non-blank line of the section
    insert_at = end
    while insert_at > start + 1 and not out[insert_at - 1].strip():
        insert_at -= 1
    new = ['%s = %s\n' % (k, v) for k, v in values.items()
           if pending[k] is not _SEEN]
    out[insert_at:insert_at] = new
    if out and not out[-1].endswith('\n'):
        out[-1] += '\n'
    return out


def _format(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def validate_clear_options(options):
    """Check ``[clear]`` values against nova-clear's option definitions.

    Returns the values as strings, as they go into the file.
    """
    by_name = {o.name: o for o in clear_conf.OPTS}
    checked = {}
    for name, value in options.items():
        opt = by_name.get(name)
        if opt is None:
            raise ConfigError('[clear] has no option %r; known options: %s'
                              % (name, ', '.join(sorted(by_name))))
        try:
            opt.type(_format(value))
        except (ValueError, TypeError) as e:
            raise ConfigError('[clear] %s = %r: %s' % (name, value, e))
        checked[name] = _format(value)
    return checked


def configure(path, clear_options=None, extra=None, driver=DRIVER):
    """Set compute_driver, [clear] options and ``extra`` in ``path``.

    ``extra`` maps section -> {option: value} for settings other than
    nova-clear's own (e.g. ``[nova_sys_admin] helper_command``); they are
    written as given.  Creates the file if it does not exist.
    """
    clear_values = validate_clear_options(clear_options or {})
    sections = {'DEFAULT': {'compute_driver': driver}}
    if clear_values:
        sections['clear'] = clear_values
    for section, values in (extra or {}).items():
        for key, value in values.items():
            if not key or '\n' in _format(value) or '=' in key:
                raise ConfigError('bad setting [%s] %r' % (section, key))
            sections.setdefault(section, {})[key] = _format(value)
    try:
        with open(path) as f:
            lines = f.readlines()
        st = os.stat(path)
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        lines, mode, owner = [], 0o640, None
    for section, values in sections.items():
        lines = set_options(lines, section, values)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.nova-clear-', dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            f.writelines(lines)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            # nova-compute runs unprivileged and reads this file: keep its
            # owner and group (typically root:nova 0640) when root edits it
            try:
                os.chown(tmp, *owner)
            except PermissionError:
                raise ConfigError(
                    'cannot keep the owner %d:%d of %s (run as root or as '
                    'its owner)' % (owner[0], owner[1], path))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return sections


def _parse_set(items):
    extra = {}
    for item in items or ():
        m = re.match(r'^([^.=\s]+)\.([^=\s]+)=(.*)$', item)
        if not m:
            raise ConfigError('--set wants SECTION.OPTION=VALUE, got %r'
                              % item)
        extra.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return extra


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='nova-clear-configure',
        description='Write compute_driver = %s and the [clear] options '
                    'into a nova.conf (in place, comments kept).' % DRIVER)
    parser.add_argument('--config-file', required=True,
                        help='the nova-compute configuration file to edit')
    parser.add_argument('--virt-type', choices=['auto', 'kvm', 'qemu'])
    parser.add_argument('--kvm-probe-timeout', type=int)
    parser.add_argument('--assets-path')
    parser.add_argument('--machine-type', choices=['microvm', 'q35'])
    parser.add_argument('--instances-path',
                        help='[clear] instances_path (default: nova\'s)')
    parser.add_argument('--clear', action='append', metavar='OPTION=VALUE',
                        help='any other [clear] option (repeatable)')
    parser.add_argument('--set', action='append',
                        metavar='SECTION.OPTION=VALUE',
                        help='another setting, written as given '
                             '(repeatable)')
    args = parser.parse_args(argv)
    options = {}
    for name in ('virt_type', 'kvm_probe_timeout', 'assets_path',
                 'machine_type', 'instances_path'):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    try:
        for item in args.clear or ():
            if '=' not in item:
                raise ConfigError('--clear wants OPTION=VALUE, got %r'
                                  % item)
            k, v = item.split('=', 1)
            options[k.strip()] = v.strip()
        if args.assets_path and not os.path.exists(
                os.path.join(args.assets_path, 'manifest.json')):
            print('nova-clear-configure: warning: %s has no manifest.json '
                  'yet; build it with nova-clear-build-guest --dest %s'
                  % (args.assets_path, args.assets_path), file=sys.stderr)
        written = configure(args.config_file, options, _parse_set(args.set))
    except (ConfigError, OSError) as e:
        print('nova-clear-configure: error: %s' % e, file=sys.stderr)
        return 2
    for section, values in written.items():
        for k, v in values.items():
            print('%s: [%s] %s = %s' % (args.config_file, section, k, v))
    return 0


if __name__ == '__main__':
    sys.exit(main())
