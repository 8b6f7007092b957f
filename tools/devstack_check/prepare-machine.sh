#!/bin/bash
# Run as root inside the devstack machine (tools/devstack-check prepare):
# what a fresh cloud VM has before devstack runs, plus the systemctl
# stand-in.  Nothing else: devstack installs the rest.
set -euxo pipefail
SYSTEMCTL_PACKAGE=$1
export DEBIAN_FRONTEND=noninteractive

# Package scripts do not start daemons (there is no init system to ask);
# devstack starts every service it needs through systemctl.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
update-ca-certificates
# stack.sh sets LC_ALL=en_US.utf8, as Debian's installer would have made it
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
locale-gen
apt-get update -q

# PID 1 is not systemd: systemctl and journalctl are docker-systemctl-
# replacement, which runs the unit files devstack writes.  Diverted, so a
# package that ships the real ones does not replace them.
python3 -m venv /opt/systemctl-standin
/opt/systemctl-standin/bin/pip install -q "$SYSTEMCTL_PACKAGE"
# bookworm's systemd ships /bin/systemctl, /bin is /usr/bin: both names.
for tool in systemctl journalctl; do
    for dir in /bin /usr/bin; do
        dpkg-divert --local --rename --divert $dir/$tool.distrib \
            --add $dir/$tool
    done
    ln -sf /opt/systemctl-standin/bin/${tool}3 /usr/bin/$tool
done
# journald is systemd's own; the stand-in keeps every unit's output itself
# (journalctl reads it), so the machine's systemd-journald is a no-op unit
# that devstack may restart.
mkdir -p /etc/systemd/system
cat > /etc/systemd/system/systemd-journald.service <<'UNIT'
[Unit]
Description=Journal (a no-op: the systemctl stand-in keeps unit logs)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
UNIT

# libvirtd: Debian's unit wants socket activation (and exits after 120 s
# idle, as nothing would start it again here) and a service type the
# stand-in does not know; this one takes precedence over the package's.
cat > /etc/systemd/system/libvirtd.service <<'UNIT'
# tools/devstack-check: Debian's libvirtd.service for a machine whose PID 1
# is not systemd (no socket activation, the systemctl stand-in's types):
# libvirtd makes its own sockets and does not exit when idle, virtlogd is
# started first (virtlogd.socket would have started it), and so is D-Bus
# (started at boot on a real host; libvirtd started without it refuses
# every unprivileged client: "Unable to get system bus connection").
[Unit]
Description=libvirt legacy monolithic daemon
After=network.target
[Service]
Type=notify
ExecStartPre=-/bin/systemctl start virtlogd
ExecStartPre=-/bin/systemctl start dbus
ExecStart=/usr/sbin/libvirtd
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure
LimitNOFILE=1024:524288
TasksMax=32768
LimitMEMLOCK=64M
[Install]
WantedBy=multi-user.target
UNIT

# D-Bus (libvirtd 11 asks for the system bus): Debian's unit takes its
# socket from systemd (--address=systemd:); this one makes its own.
cat > /etc/systemd/system/dbus.service <<'UNIT'
# tools/devstack-check: Debian's dbus.service listens on the socket systemd
# passes it (--address=systemd:); here dbus-daemon makes its own socket.
[Unit]
Description=D-Bus System Message Bus
[Service]
Type=simple
ExecStartPre=/bin/mkdir -p /run/dbus
ExecStart=/usr/bin/dbus-daemon --system --nofork --nopidfile
[Install]
WantedBy=multi-user.target
UNIT

# libvirt runs each QEMU in a private mount namespace with its own /dev;
# inside this machine (its /dev is this host's, bound in) QEMU then found
# no /dev/urandom and did not start.  No such namespace here (devstack's
# apt keeps this file: --force-confold; it appends its own settings).
mkdir -p /etc/libvirt
echo 'namespaces = []' > /etc/libvirt/qemu.conf

# This host's kernel has no iSCSI (iscsid: "can not create NETLINK_ISCSI
# socket"), and devstack's lib/nova restarts iscsid unconditionally for
# Cinder's LVM/iSCSI volumes, which this check does not enable: iscsid is
# a no-op unit here.
cat > /etc/systemd/system/iscsid.service <<'UNIT'
[Unit]
Description=iscsid (a no-op: this kernel has no iSCSI)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
UNIT

# This host's root has no CAP_SYS_RESOURCE, so a lowered hard limit stays
# lowered.  sudo lowers its own core limit to 0,0 (sudo.conf
# disable_coredump) and gives its command 0,0 too (sudoers rlimit_core),
# and cannot restore the hard limit; the stand-in forks units from their
# caller (systemd would start them with DefaultLimitCORE=0:infinity), so
# libvirtd started through devstack's sudo had a hard limit of 0 and every
# QEMU failed to start ("cannot limit core file size of process … to
# 18446744073709551615").  Both settings keep the caller's limit.
echo 'Set disable_coredump false' >> /etc/sudo.conf
echo 'Defaults rlimit_core=default' > /etc/sudoers.d/nova-clear-core-limit
chmod 440 /etc/sudoers.d/nova-clear-core-limit
visudo -c -f /etc/sudoers.d/nova-clear-core-limit

# devstack's own way to make its user
/opt/stack/devstack/tools/create-stack-user.sh
chown -R stack:stack /opt/stack /opt/git
