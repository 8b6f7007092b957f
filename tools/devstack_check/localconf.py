"""local.conf for the devstack check: devstack/local.conf.sample, the Zuul
job's tempest settings, and only what this environment forces, each with
its reason.  Pure functions, unit-tested."""

import re

import yaml

# (setting, why this environment forces it)
FORCED = (
    ('GIT_BASE=file://{git_base}',
     'only PyPI and Debian are reachable: the services\' git repositories '
     'are made from their PyPI sdists (tools/devstack_check/repos.py)'),
    ('disable_service etcd3',
     'devstack downloads etcd from GitHub; nothing here needs it (no '
     'Cinder)'),
    ('disable_service dstat',
     'dstat installs pcp, whose package scripts fail unless systemd is '
     'PID 1 (here a systemctl stand-in runs devstack\'s units)'),
    ('TEMPEST_VENV_UPPER_CONSTRAINTS={stack_home}/requirements/'
     'upper-constraints.txt',
     'devstack\'s default, master, reads releases.openstack.org, which is '
     'not reachable: the requirements repository\'s upper-constraints '
     '(constraints.txt) instead'),
    ('disable_service n-novnc',
     'devstack clones noVNC from GitHub; the serial console (n-sproxy) is '
     'the console Clear Containers have'),
)

PLUGIN_LINE = re.compile(r'^enable_plugin\s+(\S+)\s+(\S+)(.*)$', re.M)


def plugin_urls(git_base):
    """Where enable_plugin finds each plugin here."""
    return {'nova-clear': 'file://%s/x/nova-clear.git' % git_base,
            'neutron': 'file://%s/openstack/neutron.git' % git_base}


def zuul_job(zuul_text, name):
    for item in yaml.safe_load(zuul_text):
        job = item.get('job') if isinstance(item, dict) else None
        if job and job.get('name') == name:
            return job
    raise KeyError('no job %s in .zuul.yaml' % name)


def ini_sections(sections):
    """[section] key = value text from a {section: {key: value}} map."""
    out = []
    for section, options in sections.items():
        out.append('[%s]' % section)
        for key, value in options.items():
            if isinstance(value, bool):
                value = str(value).lower()
            out.append('%s = %s' % (key, value))
    return out


def build(sample_text, zuul_text, job_name, git_base,
          stack_home='/opt/stack'):
    """The local.conf text (devstack's DEST is ``stack_home``)."""
    job = zuul_job(zuul_text, job_name)
    urls = plugin_urls(git_base)

    def local_plugin(m):
        name = m.group(1)
        if name not in urls:
            raise ValueError('no local repository for plugin %s' % name)
        return 'enable_plugin %s %s%s' % (name, urls[name], m.group(3))

    text, count = PLUGIN_LINE.subn(local_plugin, sample_text)
    if 'nova-clear' not in {m.group(1)
                            for m in PLUGIN_LINE.finditer(sample_text)}:
        raise ValueError('local.conf.sample enables no nova-clear plugin')
    forced = ['', '# --- forced by this environment (tools/devstack-check) '
              '---']
    for setting, why in FORCED:
        forced.append('# %s' % why)
        forced.append(setting.format(git_base=git_base, stack_home=stack_home))
    text = text.replace('[[local|localrc]]\n',
                        '[[local|localrc]]\n' + '\n'.join(forced[1:]) +
                        '\n# --- end of forced settings ---\n\n', 1)
    test_config = (job.get('vars', {}).get('devstack_local_conf', {})
                   .get('test-config', {}))
    for conf, sections in test_config.items():
        text += ('\n# from the Zuul job %s (test-config)\n[[test-config|%s]]\n'
                 % (job_name, conf))
        text += '\n'.join(ini_sections(sections)) + '\n'
    return text


def tempest_selection(zuul_text, job_name):
    """(regex, concurrency) of the Zuul job's tempest run."""
    job = zuul_job(zuul_text, job_name)
    jvars = job.get('vars', {})
    concurrency = int(jvars.get('tempest_concurrency', 2))
    return jvars['tempest_test_regex'], concurrency


def localrc_differences(sample_text, zuul_text, job_name):
    """Settings the Zuul job's devstack_localrc and the sample disagree on
    (name -> (sample, zuul)), so the check says how its run differs."""
    job = zuul_job(zuul_text, job_name)
    zuul = {k: str(v) for k, v in
            job.get('vars', {}).get('devstack_localrc', {}).items()}
    sample = {}
    for line in sample_text.splitlines():
        m = re.match(r'^([A-Z_][A-Z0-9_]*)=(.*)$', line.strip())
        if m:
            sample[m.group(1)] = m.group(2)
    out = {}
    for key, value in zuul.items():
        have = sample.get(key)
        if have is None or have.lower() != value.lower():
            out[key] = (have, value)
    return out
