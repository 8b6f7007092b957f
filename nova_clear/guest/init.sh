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
#   nova_clear.mode=container   container image: /dev/vda is the image's
#                               read-only root filesystem, /dev/vdb the
#                               instance's writable disk holding the
#                               workload spec (nova-clear/{argv,env,
#                               workdir,user}) and the overlay upper layer
#   nova_clear.configdrive=DEV  Nova's config drive; container workloads
#                               find it at /.nova-clear/config-drive
#   nova_clear.if=MAC,MTU       a network interface (virtio-net), by MAC
#   nova_clear.ip=MAC,ADDR/LEN  a fixed address of that interface
#   nova_clear.rt=MAC,NET/LEN,GW  a route (0.0.0.0/0, ::/0: the gateway)
#   nova_clear.dns=ADDR         a name server (container: /etc/resolv.conf)
#   nova_clear.debug=1          shell trace
#
# Exit contract: a workload command runs as a child of this agent, in a
# session of its own with the console (ttyS0) as its terminal; when it
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

UUID=unknown HOSTNAME_ARG= ROOTDEV=/dev/vda WORKLOAD= DEBUG= PROBE= MODE= CONFIGDRIVE=
NET_IF= NET_IP= NET_RT= NET_DNS=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        nova_clear.uuid=*) UUID=${arg#*=} ;;
        nova_clear.hostname=*) HOSTNAME_ARG=${arg#*=} ;;
        nova_clear.root=*) ROOTDEV=${arg#*=} ;;
        nova_clear.debug=1) DEBUG=1 ;;
        nova_clear.probe=1) PROBE=1 ;;
        nova_clear.mode=*) MODE=${arg#*=} ;;
        nova_clear.configdrive=*) CONFIGDRIVE=${arg#*=} ;;
        nova_clear.if=*) NET_IF="$NET_IF ${arg#*=}" ;;
        nova_clear.ip=*) NET_IP="$NET_IP ${arg#*=}" ;;
        nova_clear.rt=*) NET_RT="$NET_RT ${arg#*=}" ;;
        nova_clear.dns=*) NET_DNS="$NET_DNS ${arg#*=}" ;;
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

# The interface holding MAC (virtio-mmio probing is asynchronous).
iface_of() {
    i=0
    while [ $i -lt 100 ]; do
        for d in /sys/class/net/*; do
            [ "$(cat "$d/address" 2>/dev/null)" = "$1" ] && { echo "${d##*/}"; return 0; }
        done
        usleep 50000; i=$((i + 1))
    done
    return 1
}

# Static configuration from Nova's network metadata: no DHCP, no waiting.
configure_network() {
    ip link set lo up
    [ -n "$NET_IF" ] || return 0
    for spec in $NET_IF; do
        mac=${spec%%,*} mtu=${spec#*,}
        dev=$(iface_of "$mac") || die "no network interface with MAC $mac"
        [ -n "$mtu" ] && { ip link set dev "$dev" mtu "$mtu" || die "cannot set MTU $mtu on $dev"; }
        ip link set dev "$dev" up || die "cannot bring $dev up"
        addrs=
        for a in $NET_IP; do
            [ "${a%%,*}" = "$mac" ] || continue
            addr=${a#*,}
            case $addr in
                *:*) if [ -e /proc/sys/net/ipv6 ]; then
                         # Neutron allocated it: no duplicate detection
                         # delay (busybox ip has no "nodad")
                         echo 0 > "/proc/sys/net/ipv6/conf/$dev/accept_dad"
                         ip -6 addr add "$addr" dev "$dev" || die "cannot add $addr to $dev"
                     else
                         say "warning: the guest kernel has no IPv6; $addr not configured"; continue
                     fi ;;
                *) ip addr add "$addr" dev "$dev" || die "cannot add $addr to $dev" ;;
            esac
            addrs="$addrs $addr"
        done
        say "network $dev $mac mtu ${mtu:-default}${addrs:- no address}"
    done
    metric=0
    for r in $NET_RT; do
        mac=${r%%,*} rest=${r#*,}
        dst=${rest%%,*} via=${rest#*,}
        dev=$(iface_of "$mac") || continue
        case $dst in
            *:*) [ -e /proc/sys/net/ipv6 ] || continue; fam=-6 ;;
            *) fam=-4 ;;
        esac
        case $dst in 0.0.0.0/0|::/0) dst=default; metric=$((metric + 1)) ;; esac
        # one default route per interface, the first interface's preferred
        ip $fam route add "$dst" via "$via" dev "$dev" metric $metric ||
            say "warning: cannot add route $dst via $via dev $dev"
    done
}

# Name servers for the root filesystem about to run (container images get
# theirs in the overlay's upper layer; the image stays untouched).
write_resolv_conf() {
    [ -n "$NET_DNS" ] && [ -d "$1/etc" ] && [ ! -L "$1/etc/resolv.conf" ] || return 0
    : > "$1/etc/resolv.conf.nova-clear"
    for a in $NET_DNS; do echo "nameserver $a" >> "$1/etc/resolv.conf.nova-clear"; done
    mv "$1/etc/resolv.conf.nova-clear" "$1/etc/resolv.conf"
}

configure_network

wait_disk() {
    # virtio-mmio probing is asynchronous.
    i=0
    while [ ! -b "$1" ] && [ $i -lt 100 ]; do usleep 50000; i=$((i + 1)); done
    [ -b "$1" ] || die "disk $1 not found"
}

mount_disk_image() {
    wait_disk "$ROOTDEV"
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
}

mount_container() {
    wait_disk /dev/vda
    wait_disk /dev/vdb
    mkdir -p /lower /rw
    mount -o ro /dev/vda /lower || die "cannot mount the image's root filesystem (/dev/vda)"
    mount /dev/vdb /rw || die "cannot mount the writable disk (/dev/vdb)"
    [ -f /rw/nova-clear/argv ] || die "the writable disk holds no workload spec"
    mkdir -p /rw/upper /rw/work
    mount -t overlay overlay \
        -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
        die "cannot mount the overlay root"
    # Our busybox and the launcher live on a tmpfs, outside the image.
    mkdir -p /newroot/.nova-clear
    mount -t tmpfs -o size=8m,mode=0755 nova-clear /newroot/.nova-clear
    cp /bin/busybox /newroot/.nova-clear/busybox
    cp /rw/nova-clear/env /newroot/.nova-clear/env
    cat > /newroot/.nova-clear/run <<'RUN'
W="$1"; U="$2"; shift 2
while IFS= read -r kv; do export "$kv"; done < /.nova-clear/env
cd "$W" || { echo "nova-clear: error: working directory $W does not exist"; exit 126; }
case "$U" in ""|0|root|0:0|root:root|0:root|root:0) exec "$@" ;; esac
p=$(command -v "$1") || { echo "nova-clear: error: $1: command not found"; exit 127; }
shift
exec /.nova-clear/busybox start-stop-daemon -S -n nova-clear-never -c "$U" -x "$p" -- "$@"
RUN
    if [ -n "$CONFIGDRIVE" ]; then
        wait_disk "$CONFIGDRIVE"
        mkdir -p /newroot/.nova-clear/config-drive
        mount -t iso9660 -o ro "$CONFIGDRIVE" /newroot/.nova-clear/config-drive ||
            say "warning: cannot mount the config drive $CONFIGDRIVE"
    fi
    if [ -s /rw/nova-clear/authorized_keys ]; then
        # The instance's key pair, for images that run an SSH server.
        mkdir -p /newroot/root/.ssh && chmod 700 /newroot/root/.ssh
        cp /rw/nova-clear/authorized_keys /newroot/root/.ssh/authorized_keys
        chmod 600 /newroot/root/.ssh/authorized_keys
    fi
    WORKDIR=$(cat /rw/nova-clear/workdir)
    RUNAS=$(cat /rw/nova-clear/user)
    WORKLOAD=/.nova-clear/busybox
}

mkdir -p /newroot
if [ "$MODE" = container ]; then
    mount_container
    # argv, one per line (positional parameters are global only here).
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done < /rw/nova-clear/argv
    set -- env -i /.nova-clear/busybox sh /.nova-clear/run "$WORKDIR" "$RUNAS" "$@"
else
    mount_disk_image
fi

[ -n "$HOSTNAME_ARG" ] && [ -d /newroot/etc ] && \
    echo "$HOSTNAME_ARG" > /newroot/etc/hostname 2>/dev/null
write_resolv_conf /newroot
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
mkdir -p /newroot/dev /newroot/proc /newroot/sys 2>/dev/null
mount --bind /dev /newroot/dev 2>/dev/null
mount -t proc proc /newroot/proc 2>/dev/null
mount -t sysfs sysfs /newroot/sys 2>/dev/null
# The console is the workload's terminal, as "docker run -it" gives one:
# the console's own device (ttyS0) as stdin, stdout, stderr and
# controlling terminal (^C, job control for a shell).  Not /dev/console:
# the kernel opens it non-blocking (a read with no input waiting fails
# with EAGAIN) and never makes it a controlling terminal on open.  With
# [serial_console] enabled what is typed into "openstack console url show
# --serial" reaches it.
tty=
for t in $(cat /sys/class/tty/console/active 2>/dev/null); do tty=/dev/$t; done
[ -c "$tty" ] || tty=/dev/console
setsid -c chroot /newroot "$WORKLOAD" "$@" < "$tty" > "$tty" 2>&1
status=$?
say "workload exited status=$status"
sync
umount /newroot/.nova-clear /newroot/sys /newroot/proc /newroot/dev 2>/dev/null
mount -o remount,ro /newroot 2>/dev/null
poweroff -f
