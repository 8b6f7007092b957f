# clear-update boot state, for the boot initramfs (busybox sh).
#
# choose_boot STATE_FILE: decide which version boots, exactly as
# nova_clear.hostos.boot.choose does (tested against it), write the new
# state atomically and set $version.  Messages go to stderr (the console in
# the initramfs).  Returns 1, changing nothing, on a malformed state.
choose_boot() {
    state=$1
    current=0 previous=0 pending=0 tries=0 booted=0 failed=0
    [ -f "$state" ] || { echo "clear-boot: no boot state $state" >&2; return 1; }
    while IFS='=' read -r key value; do
        case "$key" in ''|'#'*) continue ;; esac
        case "$value" in
            ''|*[!0-9]*)
                echo "clear-boot: malformed boot state: $key=$value" >&2
                return 1 ;;
        esac
        case "$key" in
            current) current=$value ;; previous) previous=$value ;;
            pending) pending=$value ;; tries) tries=$value ;;
            booted) booted=$value ;; failed) failed=$value ;;
            *) echo "clear-boot: unknown boot state key $key" >&2; return 1 ;;
        esac
    done < "$state"

    if [ "$pending" -ne 0 ] && [ "$tries" -gt 0 ]; then
        tries=$((tries - 1))
        version=$pending
        echo "clear-boot: trying version $pending ($tries tries left after this one)" >&2
    else
        if [ "$pending" -ne 0 ]; then
            echo "clear-boot: version $pending failed its tries: rolling back to $current" >&2
            failed=$pending pending=0 tries=0
        fi
        version=$current
    fi
    booted=$version
    printf 'current=%d\nprevious=%d\npending=%d\ntries=%d\nbooted=%d\nfailed=%d\n' \
        "$current" "$previous" "$pending" "$tries" "$booted" "$failed" \
        > "$state.new" || return 1
    sync
    mv "$state.new" "$state" || return 1
    sync
}
