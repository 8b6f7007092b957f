#!/bin/busybox sh
# clear-update boot initramfs: PID 1 before the host OS.
#
# Mounts the root disk, reads /boot/state (written by clear-update), picks
# the version to boot exactly like nova_clear.hostos.boot.choose, writes the
# state back atomically (decremented try counter, or the rollback) and
# switch_roots into /versions/<N>, with the whole disk at /sysroot.
#
# Kernel command line:
#   clear.root=DEV       root disk (default /dev/vda)
#   clear.rootfstype=T   its filesystem (default ext4)
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "clear-boot: $*" > /dev/console; }
die() { say "error: $*"; sync; poweroff -f; sleep 5; exit 1; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

ROOTDEV=/dev/vda FSTYPE=ext4
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        clear.root=*) ROOTDEV=${arg#*=} ;;
        clear.rootfstype=*) FSTYPE=${arg#*=} ;;
    esac
done

if [ -f /lib/modules/load-order ]; then
    while read -r mod; do
        [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
    done < /lib/modules/load-order
fi
i=0
while [ ! -b "$ROOTDEV" ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
mkdir -p /sysroot /newroot
mount -t "$FSTYPE" -o rw "$ROOTDEV" /sysroot || die "cannot mount $ROOTDEV"

STATE=/sysroot/boot/state
current=0 previous=0 pending=0 tries=0 booted=0 failed=0
[ -f "$STATE" ] || die "no boot state $STATE"
while IFS='=' read -r key value; do
    case "$value" in ''|*[!0-9]*) die "malformed boot state: $key=$value" ;; esac
    case "$key" in
        current) current=$value ;; previous) previous=$value ;;
        pending) pending=$value ;; tries) tries=$value ;;
        booted) booted=$value ;; failed) failed=$value ;;
        *) die "unknown boot state key $key" ;;
    esac
done < "$STATE"

if [ "$pending" -ne 0 ] && [ "$tries" -gt 0 ]; then
    tries=$((tries - 1))
    version=$pending
    say "trying version $pending ($tries tries left after this one)"
else
    if [ "$pending" -ne 0 ]; then
        say "version $pending failed its tries: rolling back to $current"
        failed=$pending pending=0 tries=0
    fi
    version=$current
fi
booted=$version
printf 'current=%d\nprevious=%d\npending=%d\ntries=%d\nbooted=%d\nfailed=%d\n' \
    "$current" "$previous" "$pending" "$tries" "$booted" "$failed" > "$STATE.new"
sync
mv "$STATE.new" "$STATE"
sync

TREE=/sysroot/versions/$version
[ -d "$TREE" ] || die "snapshot $TREE missing"
say "booting version $version"
mount --bind "$TREE" /newroot || die "cannot bind $TREE"
if [ -d /newroot/sysroot ]; then
    mount --bind /sysroot /newroot/sysroot
fi
umount /proc /sys 2>/dev/null
exec switch_root /newroot /sbin/init
