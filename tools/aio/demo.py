"""The demo: Clear Containers booted through the API (or the
``openstack`` CLI), timed at the API from ``POST /servers`` to ACTIVE, to
the workload's line on the console and to answering ping on the provider
network; the first one's console is shown.  Then the sample container
image, booted the same way, with its console."""

import json
import re
import statistics
import subprocess
import threading
import time

from tools.aio import cloud
from tools.aio import hostnet
from tools.aio import process
from tools.aio import settings
from tools.aio import state

FLAVOR = 'clear.tiny.cc'
HEADERS = {'OpenStack-API-Version': 'compute %s'
           % settings.COMPUTE_MICROVERSION}


def api_boot(conn, name, image_id, flavor, network_id=None, timeout=300,
             line=cloud.WORKLOAD_LINE):
    """POST /servers and time ACTIVE and the workload line at the API."""
    flavor_id = conn.compute.find_flavor(flavor, ignore_missing=False).id
    body = {'server': {'name': name, 'imageRef': image_id,
                       'flavorRef': flavor_id,
                       'networks': ([{'uuid': network_id}] if network_id
                                    else 'none')}}
    t0 = time.monotonic()
    resp = conn.compute.post('/servers', json=body, headers=HEADERS,
                             raise_exc=False)
    if resp.status_code >= 400:
        raise process.Failure('POST /servers: %s %s' % (
            resp.status_code, resp.text), process.log_path('nova-api-app'))
    return poll_boot(conn, resp.json()['server']['id'], t0, timeout, line)


def poll_boot(conn, sid, t0, timeout=300, line=cloud.WORKLOAD_LINE):
    """Times from ``t0`` to ACTIVE and to the workload line, at the API."""
    session = conn.compute
    result = {'id': sid}
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        s = session.get('/servers/%s' % sid,
                        headers=HEADERS).json()['server']
        if s['status'] == 'ACTIVE':
            result['active'] = time.monotonic() - t0
            result['active_at'] = time.time()
            break
        if s['status'] == 'ERROR':
            raise process.Failure('server %s went to ERROR: %s' % (
                sid, s.get('fault', {}).get('message')),
                process.log_path('nova-compute'))
        time.sleep(0.05)
    else:
        raise process.Failure('server %s not ACTIVE after %ds'
                              % (sid, timeout),
                              process.log_path('nova-compute'))
    while time.monotonic() < deadline:
        out = session.post('/servers/%s/action' % sid, headers=HEADERS,
                           json={'os-getConsoleOutput': {}})
        if line in (out.json().get('output') or ''):
            result['line'] = time.monotonic() - t0
            return result
        time.sleep(0.1)
    raise process.Failure('no "%s" in the console of %s after %ds'
                          % (line, sid, timeout),
                          process.log_path('nova-compute'))


def cli_boot(conn, name, image, flavor, network=None, timeout=300,
             line=cloud.WORKLOAD_LINE):
    """``openstack server create --wait --network NET``, timed at the API.

    The CLI's debug output marks the moment it sends ``POST /servers``;
    from then on the API is polled for ACTIVE and the console for the
    workload line while the CLI waits (it polls every 5 s).
    """
    nic = ['--network', network] if network else ['--nic', 'none']
    cmd = ([settings.venv_tool('openstack'), '--debug', 'server', 'create',
            '--wait'] + nic +
           ['--flavor', flavor, '--image', image, '-f', 'json', name])
    print('$ openstack server create --wait %s --flavor %s --image %s %s'
          % (' '.join(nic), flavor, image, name), flush=True)
    t_cli = time.monotonic()
    proc = subprocess.Popen(cmd, env=cloud.cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    posted = []
    err_tail = []

    def read_stderr():
        pattern = re.compile(r'REQ: curl .*-X POST \S+/servers(\s|$)')
        for line in proc.stderr:
            if not posted and pattern.search(line):
                posted.append(time.monotonic())
            err_tail.append(line)
            del err_tail[:-40]
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not posted and proc.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    sid = None
    while posted and sid is None and time.monotonic() < deadline:
        for srv in conn.compute.servers(name='^%s$' % re.escape(name)):
            sid = srv.id
        if sid is None:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    if sid is None:
        proc.wait()
        reader.join(5)
        raise process.Failure(
            'openstack server create failed (exit %s): %s' % (
                proc.returncode, ''.join(err_tail[-5:]).strip()),
            process.log_path('nova-api-app'))
    result = poll_boot(conn, sid, posted[0], timeout, line)
    out, _ = proc.communicate(timeout=timeout)
    reader.join(5)
    result['cli'] = time.monotonic() - t_cli
    if proc.returncode:
        raise process.Failure('openstack server create exited %d: %s' % (
            proc.returncode, ''.join(err_tail[-5:]).strip()),
            process.log_path('nova-compute'))
    try:
        shown = json.loads(out)
        flavor_shown = shown.get('flavor')
        if isinstance(flavor_shown, dict):
            flavor_shown = flavor_shown.get('name')
        print('  id %s  status %s  flavor %s  image %s' % (
            shown.get('id'), shown.get('status'), flavor_shown,
            (shown.get('image') or '').split(' ')[0]))
    except ValueError:
        print(out)
    return result


def openstack_cli(*args):
    return subprocess.run([settings.venv_tool('openstack')] + list(args),
                          env=cloud.cli_env(), capture_output=True,
                          text=True)


def _boot_one(conn, i, ids, cli, network_id):
    """Boot ``aio-demo-<i+1>`` (replacing an old one), wait for its
    workload and its ping; show the first one's console."""
    name = 'aio-demo-%d' % (i + 1)
    for old in conn.compute.servers(name='^%s$' % name):
        conn.compute.delete_server(old)
        conn.compute.wait_for_delete(old)
    if cli and i == 0:
        r = cli_boot(conn, name, cloud.IMAGE, FLAVOR,
                     hostnet.NET.network if network_id else None)
    else:
        r = api_boot(conn, name, ids[cloud.IMAGE], FLAVOR, network_id)
    process.say('%s: POST /servers -> ACTIVE %.2fs, -> "%s" %.2fs (at the '
                'API)' % (name, r['active'], cloud.WORKLOAD_LINE, r['line']))
    address = None
    if network_id:
        server = conn.compute.get_server(r['id'])
        address = [a['addr'] for a in
                   server.addresses.get(hostnet.NET.network, [])
                   if a['version'] == 4][0]
        waited, out = hostnet.ping_from_provider(address)
        r['address'] = address
        r['ping'] = r['line'] + waited
    if i == 0:
        out_console = openstack_cli('console', 'log', 'show', r['id'])
        print('$ openstack console log show %s' % name)
        print(out_console.stdout.rstrip() or out_console.stderr.rstrip())
        if address:
            print('$ ip netns exec %s busybox ping -c 1 %s'
                  % (hostnet.NET.netns, address))
            print(out.rstrip())
    if address:
        process.say('%s: %s on %s answers ping from the provider namespace '
                    '%.2fs after POST' % (name, address, hostnet.NET.network,
                                          r['ping']))
    return r


def _delete(conn, r):
    t0 = time.monotonic()
    server = conn.compute.get_server(r['id'])
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.1)
    r['delete'] = time.monotonic() - t0


def boot_container(conn, cli, network_id, keep=False):
    """The sample container image (busybox, a docker archive in Glance)
    as a Clear Container: timed to ACTIVE and to its first line, console
    shown."""
    name = 'aio-demo-container'
    for old in conn.compute.servers(name='^%s$' % name):
        conn.compute.delete_server(old)
        conn.compute.wait_for_delete(old)
    if cli:
        r = cli_boot(conn, name, cloud.IMAGE_CONTAINER, FLAVOR,
                     hostnet.NET.network if network_id else None,
                     line=cloud.CONTAINER_LINE)
    else:
        image = conn.image.find_image(cloud.IMAGE_CONTAINER,
                                      ignore_missing=False)
        r = api_boot(conn, name, image.id, FLAVOR, network_id,
                     line=cloud.CONTAINER_LINE)
    process.say('%s: POST /servers -> ACTIVE %.2fs, -> "%s" %.2fs (at the '
                'API)' % (name, r['active'], cloud.CONTAINER_LINE,
                          r['line']))
    out = openstack_cli('console', 'log', 'show', r['id'])
    print('$ openstack console log show %s' % name)
    print(out.stdout.rstrip() or out.stderr.rstrip())
    if not keep:
        _delete(conn, r)
    return r


def run(repeat=1, keep=False, cli=False, network=True):
    """``repeat`` demo boots; their medians, recorded as ``last_demo``."""
    conn = cloud.connection()
    st = state.load()
    ids = st.get('images') or cloud.images_and_flavors()
    network_id = (st.get('network') or {}).get('network_id') \
        if network else None
    if network and not network_id:
        raise process.Failure('no provider network %s: run tools/allinone '
                              'start' % hostnet.NET.network)
    runs = []
    for i in range(repeat):
        r = _boot_one(conn, i, ids, cli, network_id)
        runs.append(r)
        if not keep:
            _delete(conn, r)
    summary = {'runs': runs,
               'network': hostnet.NET.network if network_id else None}
    if repeat:
        process.say('demo: a container image (docker archive) as a Clear '
                    'Container')
        summary['container'] = boot_container(conn, cli, network_id, keep)
    if runs:
        summary['median_active'] = statistics.median(
            r['active'] for r in runs)
        summary['median_line'] = statistics.median(r['line'] for r in runs)
        process.say('median of %d: POST -> ACTIVE %.2fs, POST -> workload '
                    'line %.2fs' % (len(runs), summary['median_active'],
                                    summary['median_line']))
        if network_id:
            summary['median_ping'] = statistics.median(
                r['ping'] for r in runs)
            process.say('median of %d: POST -> answers ping %.2fs'
                        % (len(runs), summary['median_ping']))
    state.update(last_demo=summary)
    return summary
