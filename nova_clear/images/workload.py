"""Pure: what a container image runs, from its config and image properties.

The image config's ``Entrypoint``, ``Cmd``, ``Env``, ``WorkingDir`` and
``User`` apply, as ``docker run`` applies them, unless these Glance image
properties override them:

``clear_entrypoint``  JSON list, or a shell-quoted string
``clear_cmd``         JSON list, or a shell-quoted string
``clear_env``         JSON object, or shell-quoted ``NAME=value`` words;
                      merged over the image's Env
``clear_workdir``     absolute path
``clear_user``        ``uid[:gid]`` or ``name[:group]`` of the image

Overriding the entrypoint drops the image's Cmd (docker's rule).  The
agent receives the result as small files on the instance's writable disk
(see :func:`spec_files`).
"""

import dataclasses
import json
import shlex

from nova_clear import exception as clear_exc
from nova_clear.i18n import _
from nova_clear import safe_json

PROPS = ('clear_entrypoint', 'clear_cmd', 'clear_env', 'clear_workdir',
         'clear_user')


@dataclasses.dataclass(frozen=True)
class Workload:
    argv: tuple
    env: tuple
    workdir: str
    user: str


def _words(value, prop, image_id):
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith('['):
        try:
            parsed = safe_json.loads(text)
        except ValueError as e:
            raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
                '%(p)s is not a JSON list: %(e)s') % {'p': prop, 'e': e})
        if not isinstance(parsed, list):
            raise clear_exc.InvalidWorkload(
                image_id=image_id, reason=_('%s must be a list') % prop)
        return [str(v) for v in parsed]
    try:
        return shlex.split(text)
    except ValueError as e:
        raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
            '%(p)s cannot be parsed: %(e)s') % {'p': prop, 'e': e})


def _env_pairs(value, image_id):
    text = value if isinstance(value, str) else json.dumps(value)
    if text.strip().startswith('{'):
        try:
            parsed = safe_json.loads(text)
        except ValueError as e:
            raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
                'clear_env is not a JSON object: %s') % e)
        if not isinstance(parsed, dict):
            raise clear_exc.InvalidWorkload(
                image_id=image_id, reason=_('clear_env must be an object'))
        return ['%s=%s' % (k, v) for k, v in parsed.items()]
    return _words(text, 'clear_env', image_id)


def resolve(config, props, image_id):
    """The :class:`Workload` of an image config (the OCI/docker config
    JSON) with the ``clear_*`` properties applied."""
    cfg = config.get('config') or config.get('Config') or {}
    entrypoint = cfg.get('Entrypoint') or []
    cmd = cfg.get('Cmd') or []
    if props.get('clear_entrypoint'):
        entrypoint = _words(props['clear_entrypoint'], 'clear_entrypoint',
                            image_id)
        cmd = []
    if props.get('clear_cmd'):
        cmd = _words(props['clear_cmd'], 'clear_cmd', image_id)
    argv = list(entrypoint) + list(cmd)
    if not argv:
        raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
            'the image config has neither Entrypoint nor Cmd, and no '
            'clear_entrypoint or clear_cmd property says what to run'))
    env = {}
    for pair in list(cfg.get('Env') or []) + (
            _env_pairs(props['clear_env'], image_id)
            if props.get('clear_env') else []):
        name, sep, value = pair.partition('=')
        if not sep or not name:
            raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
                'environment entry %r is not NAME=value') % pair)
        env[name] = value
    env.setdefault('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:'
                           '/usr/bin:/sbin:/bin')
    workdir = props.get('clear_workdir') or cfg.get('WorkingDir') or '/'
    if not workdir.startswith('/'):
        raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
            'working directory %r is not absolute') % workdir)
    user = str(props.get('clear_user') or cfg.get('User') or '0')
    items = argv + ['%s=%s' % kv for kv in env.items()] + [workdir, user]
    for item in items:
        if '\n' in item or '\0' in item:
            raise clear_exc.InvalidWorkload(image_id=image_id, reason=_(
                'newlines and NUL are not supported in the command, '
                'environment, working directory or user'))
    return Workload(tuple(argv), tuple('%s=%s' % kv for kv in env.items()),
                    workdir, user)


def spec_files(workload):
    """Files the agent reads (``/nova-clear/*`` on the writable disk)."""
    return {
        'argv': ''.join(a + '\n' for a in workload.argv).encode(),
        'env': ''.join(e + '\n' for e in workload.env).encode(),
        'workdir': (workload.workdir + '\n').encode(),
        'user': (workload.user + '\n').encode(),
    }
