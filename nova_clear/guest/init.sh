#!/bin/busybox sh
# nova-clear agent: PID 1 of the Clear Container's initramfs.
#
# Kernel command line it reads (written by nova_clear.domain):
#   nova_clear.uuid=UUID        instance uuid, printed in the readiness line
#   nova_clear.hostname=NAME    hostname to set
#   nova_clear.root=DEV         root disk (default /dev/vda); the whole disk is
#                               tried first (bare filesystem), then partitions
#   init=PATH [-- ARGS...]      workload; without it the image's own init
#                               (/sbin/init) is exec'd as PID 1
#   nova_clear.debug=1          shell trace
#
# Exit contract: a workload command runs as a child of this agent; when it
# exits the agent prints "nova-clear: workload exited status=N" and powers
# the guest off, so Nova sees the instance SHUTDOWN.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

say() { echo "nova-clear: $*" > /dev/console; }
die() {
    say "error: $*"
    sync
    poweroff -f
    sleep 5
    exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

UUID=unknown HOSTNAME_ARG= ROOTDEV=/dev/vda WORKLOAD= DEBUG= PROBE=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        nova_clear.uuid=*) UUID=${arg#*=} ;;
        nova_clear.hostname=*) HOSTNAME_ARG=${arg#*=} ;;
        nova_clear.root=*) ROOTDEV=${arg#*=} ;;
        nova_clear.debug=1) DEBUG=1 ;;
        nova_clear.probe=1) PROBE=1 ;;
        init=*) WORKLOAD=${arg#*=} ;;
        --) break ;;
    esac
done
[ -n "$DEBUG" ] && set -x

if [ -n "$PROBE" ]; then
    # virt_type=auto: the host only wants to know that this kernel runs.
    read -r up _ < /proc/uptime
    say "probe ok $up"
    poweroff -f
fi

# Kernel modules the distribution kernel builds as modules, in dependency
# order (written by nova-clear-build-guest).
if [ -f /lib/modules/load-order ]; then
    while read -r mod; do
        [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
    done < /lib/modules/load-order
fi

# ACPI power button -> graceful stop of the workload (agent mode).
# busybox acpid runs <conf dir>/PWRF/00000080 for the power button.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho "nova-clear: power button, stopping workload" > /dev/console\nkill -TERM -1\n' \
    > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080

[ -n "$HOSTNAME_ARG" ] && hostname "$HOSTNAME_ARG"

# Wait for the root disk (virtio-mmio probing is asynchronous).
i=0
while [ ! -b "$ROOTDEV" ] && [ $i -lt 100 ]; do usleep 50000; i=$((i + 1)); done
[ -b "$ROOTDEV" ] || die "root disk $ROOTDEV not found"

mkdir -p /newroot
target=${WORKLOAD:-/sbin/init}
mounted=
for dev in "$ROOTDEV" $(ls "$ROOTDEV"[0-9]* "$ROOTDEV"p[0-9]* 2>/dev/null); do
    [ -b "$dev" ] || continue
    if mount "$dev" /newroot 2>/dev/null; then
        if [ -e "/newroot$target" ] || [ -L "/newroot$target" ]; then
            mounted=$dev
            break
        fi
        umount /newroot
    fi
done
[ -n "$mounted" ] || die "no filesystem on $ROOTDEV (or its partitions) holds $target"

[ -n "$HOSTNAME_ARG" ] && [ -d /newroot/etc ] && \
    echo "$HOSTNAME_ARG" > /newroot/etc/hostname 2>/dev/null
read -r up _ < /proc/uptime
say "ready $UUID $up"

if [ -z "$WORKLOAD" ]; then
    # The image's own init becomes PID 1.
    umount /proc /sys 2>/dev/null
    mount --move /dev /newroot/dev 2>/dev/null || umount /dev
    exec switch_root /newroot "$target" "$@"
fi

# Agent mode: the workload runs under us; we power off when it ends.
acpid -c /etc/acpi -l /dev/null
mount --bind /dev /newroot/dev 2>/dev/null
mount -t proc proc /newroot/proc 2>/dev/null
mount -t sysfs sysfs /newroot/sys 2>/dev/null
chroot /newroot "$target" "$@" < /dev/console > /dev/console 2>&1
status=$?
say "workload exited status=$status"
sync
umount /newroot/sys /newroot/proc /newroot/dev 2>/dev/null
mount -o remount,ro /newroot 2>/dev/null
poweroff -f
