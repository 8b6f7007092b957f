# clear-update boot state, for the boot initramfs (busybox sh).
#
# choose_boot STATE_FILE: decide which version boots, exactly as
# nova_clear.hostos.boot.choose_text does (tested against it), write the
# new state atomically and set $version.  Messages go to stderr (the
# console in the initramfs).
#
# A malformed line (unknown key, value not 1-18 ASCII digits) is ignored
# with a message, and the try counter is then not trusted: the pending
# version is dropped and `current` boots, as after a failed try.  Returns
# 1, changing nothing, only when there is no state file or no valid
# `current` to boot.
choose_boot() {
    state=$1
    current=0 previous=0 pending=0 tries=0 booted=0 failed=0 malformed=0
    [ -f "$state" ] || { echo "clear-boot: no boot state $state" >&2; return 1; }
    while IFS='=' read -r key value || [ -n "$key$value" ]; do
        case "$key" in ''|'#'*) continue ;; esac
        case "$value" in
            ''|*[!0-9]*) bad=1 ;;
            *) if [ ${#value} -gt 18 ]; then bad=1; else bad=0; fi ;;
        esac
        if [ $bad = 0 ]; then
            case "$key" in
                current) current=$value ;; previous) previous=$value ;;
                pending) pending=$value ;; tries) tries=$value ;;
                booted) booted=$value ;; failed) failed=$value ;;
                *) bad=1 ;;
            esac
        fi
        if [ $bad = 1 ]; then
            echo "clear-boot: malformed boot state line ignored: $key=$value" >&2
            malformed=1
        fi
    done < "$state"

    if [ $malformed = 1 ]; then
        [ "$pending" -ne 0 ] && echo "clear-boot: malformed boot state: not trying pending version $pending" >&2
        pending=0 tries=0
    fi
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
    if [ "$version" -eq 0 ]; then
        echo "clear-boot: no valid current version in $state" >&2
        return 1
    fi
    booted=$version
    printf 'current=%d\nprevious=%d\npending=%d\ntries=%d\nbooted=%d\nfailed=%d\n' \
        "$current" "$previous" "$pending" "$tries" "$booted" "$failed" \
        > "$state.new" || return 1
    sync
    mv "$state.new" "$state" || return 1
    sync
}
