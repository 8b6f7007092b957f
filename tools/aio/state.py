"""``$AIO_HOME/aio.json``: what the all-in-one remembers between runs
(passwords, one-time steps done, the cloud's objects) and what the
integration tests read (tests/integration/base.py)."""

import json
import os
import secrets

from tools.aio import settings


def load():
    try:
        with open(settings.STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save(state):
    tmp = settings.STATE + '.tmp'
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, settings.STATE)


def update(**values):
    state = load()
    state.update(values)
    save(state)


def done(step):
    """Whether the one-time step ``step`` (a database sync …) is done."""
    return bool(load().get(step))


def mark_done(*steps):
    update(**{step: True for step in steps})


def password(name):
    """The password of ``name`` (admin, db, a service user), made once."""
    state = load()
    pw = state.setdefault('passwords', {})
    if name not in pw:
        pw[name] = secrets.token_hex(12)
        save(state)
    return pw[name]
