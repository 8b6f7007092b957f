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

# devstack's own way to make its user
/opt/stack/devstack/tools/create-stack-user.sh
chown -R stack:stack /opt/stack /opt/git
