#!/usr/bin/env bash
# What `meson install` of this build puts where, as a packager sees it.
#
#   install.sh layout    every file under the prefix (nothing in /usr with
#                        prefix /usr/local), the files users expect (module
#                        and its p11-kit module file, keytier.pc with every
#                        library in Requires.private, LICENSE, examples,
#                        man pages, bash completion, the service's unit,
#                        sysusers and tmpfiles entries) and no benchmark
#   install.sh man       `man -l` renders every installed page without a
#                        warning
#   install.sh systemd   `systemd-analyze verify` finds nothing in the unit
#                        (its ExecStart pointed at this build's keytier, its
#                        man pages those installed)
#   install.sh run       the worker's unit run as systemd would run it, as
#                        far as that goes without systemd as PID 1 (below,
#                        "run)"): its user from the sysusers entry, its
#                        directories from the tmpfiles entry and the unit,
#                        its ExecStart as its User under its UMask; it
#                        migrates a queued mailbox, then KillSignal stops
#                        it with exit 0 within TimeoutStopSec
. "$KT_SOURCE_ROOT/tests/common.sh"
# man (groff) and systemd-analyze load nothing of ours: in a sanitizer
# build they run without the ASan runtime preloaded (groff's own
# new/delete mismatch would abort them).
unset LD_PRELOAD
mode=$1
build=$KT_BUILD_ROOT
kt_tmpdir
cd "$KT_TMP"
meson install -C "$build" --no-rebuild --quiet --destdir "$KT_TMP/dest" \
    >install.log 2>&1 || kt_fail "meson install: $(cat install.log)"
prefix=$(meson introspect "$build" --buildoptions |
    jq -r '.[] | select(.name == "prefix") | .value')
mapfile -t files < <(meson introspect "$build" --installed | jq -r '.[]')
[ ${#files[@]} -gt 0 ] || kt_fail "meson introspect lists no installed file"
# installed TAIL: the installed path ending in /TAIL (a name, or the
# end of a path: bin/keytier).
installed()
{
    local f hit=
    for f in "${files[@]}"; do
        case $f in */"$1") hit=$f ;; esac
    done
    [ -n "$hit" ] && [ -e "dest$hit" ] || kt_fail "$1 is not installed"
    echo "$hit"
}

# unit_key KEY: the value of the unit's last KEY= line (empty: none).
unit_key()
{
    sed -n "s/^$1=//p" "$unit" | tail -n 1
}

# rooted PATH: where an absolute path of the unit or the installation is
# in this test: files of the installation under dest/, the rest (/etc,
# /var, /run) under the throwaway root.
rooted()
{
    case $1 in
    "$prefix"/bin/* | "$prefix"/lib/* | "$prefix"/share/*) echo "$KT_TMP/dest$1" ;;
    /*) echo "$root$1" ;;
    *) echo "$1" ;;
    esac
}

# unit_exec COMMAND...: replaces the shell by COMMAND as the unit's user
# with the environment systemd gives a service (env -i: HOME, USER,
# LOGNAME, SHELL, PATH, the *_DIRECTORY variables, Environment= and
# EnvironmentFile= lines), under the unit's UMask, in its
# WorkingDirectory (default /, the root); `unit_exec ... &` makes $! the
# command's own process.
unit_exec()
{
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        env -i "${unit_env[@]}" bash -c 'umask "$1" && cd "$2" && shift 2 &&
            exec "$@"' unit "${unit_umask:-0022}" "$unit_wd" "$@"
}

# as_unit COMMAND...: unit_exec in a subshell.
as_unit()
{
    (unit_exec "$@")
}

# unit_dirs: StateDirectory=, LogsDirectory=, RuntimeDirectory= made as
# systemd makes them (under /var/lib, /var/log, /run; the unit's mode,
# owned by its user) and their variables for the environment.
unit_dirs()
{
    local kind base var name mode
    for kind in State:/var/lib:STATE Logs:/var/log:LOGS Runtime:/run:RUNTIME; do
        IFS=: read -r kind base var <<<"$kind"
        name=$(unit_key "${kind}Directory")
        [ -n "$name" ] || continue
        mode=$(unit_key "${kind}DirectoryMode")
        mkdir -p "$root$base/$name"
        chown "$uid:$gid" "$root$base/$name"
        chmod "${mode:-0755}" "$root$base/$name"
        unit_env+=("${var}_DIRECTORY=$root$base/$name")
    done
}

# unit_environment: the variables systemd sets for a service with User=,
# then Environment= and EnvironmentFile= (paths rooted).
unit_environment()
{
    local line f
    unit_env=(HOME="$(rooted "$home")" USER="$user" LOGNAME="$user"
        SHELL=/bin/sh PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
        # what ldconfig does for a package's libraries (and the build's
        # libkt-fault.so, never installed, for a fault-injection build)
        LD_LIBRARY_PATH="$KT_TMP/dest$libdir:$build/common")
    # a sanitizer build's options pass through (the test's, not systemd's)
    local v
    for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
        [ -z "${!v:-}" ] || unit_env+=("$v=${!v}")
    done
    while IFS= read -r line; do
        # shellcheck disable=SC2206 # the unit's words, as systemd splits them
        unit_env+=($line)
    done < <(sed -n 's/^Environment=//p' "$unit")
    while IFS= read -r f; do
        f=$(rooted "${f#-}")
        [ -r "$f" ] || continue
        mapfile -t -O "${#unit_env[@]}" unit_env < <(grep -v '^#' "$f")
    done < <(sed -n 's/^EnvironmentFile=//p' "$unit")
}

# unit_setup: the user, the directories, the configuration the unit reads
# (its store and tokens), and a mailbox whose key a migration queued.
unit_setup()
{
    root=$KT_TMP/root
    mkdir -p "$root/etc"
    chmod 0755 "$KT_TMP" "$root"
    # the entries on stdin: a file named with --root is looked for in root
    systemd-sysusers --root="$root" - <"dest$(installed sysusers.d/keytier.conf)" ||
        kt_fail "systemd-sysusers"
    user=$(unit_key User)
    IFS=: read -r _ _ uid gid _ home _ < <(grep "^$user:" "$root/etc/passwd") ||
        kt_fail "the sysusers entry made no user $user: $(cat "$root/etc/passwd")"
    assert_eq "$user" "$(unit_key Group)" "the unit's Group"
    systemd-tmpfiles --root="$root" --create - \
        <"dest$(installed tmpfiles.d/keytier.conf)" || kt_fail "systemd-tmpfiles"
    assert_eq "$uid:$gid 700" "$(stat -c '%u:%g %a' "$root/var/lib/keytier")" \
        "/var/lib/keytier as tmpfiles made it"
    unit_umask=$(unit_key UMask)
    unit_wd=$(rooted "$(unit_key WorkingDirectory)")
    [ "$unit_wd" != "" ] || unit_wd=$root
    unit_environment
    unit_dirs
    exec_words=()
    read -ra exec_words <<<"$(unit_key ExecStart)"
    local conf i
    for i in "${!exec_words[@]}"; do
        exec_words[i]=$(rooted "${exec_words[i]}")
    done
    conf=$(rooted "$(unit_key ConditionPathExists)")
    mkdir -p "$(dirname "$conf")"
    module=$KT_TMP/dest$(installed keytier-pkcs11.so)
    printf '%s\n' "$PIN" >"$root/var/lib/keytier/pin"
    chown "$uid:$gid" "$root/var/lib/keytier/pin"
    chmod 0600 "$root/var/lib/keytier/pin"
    kt_store_conf "$root/var/lib/keytier/keytier.db" >"$KT_TMP/store.conf"
    cat >"$conf" <<CONF
module = $module
service_token = pkcs11:token=svc
$(cat "$KT_TMP/store.conf")
pin.vault-a = file:$root/var/lib/keytier/pin
pin.vault-b = file:$root/var/lib/keytier/pin
pin.svc = file:$root/var/lib/keytier/pin
log_file = $root/var/log/keytier/keytier.log
approval.required = no
worker.poll_ms = 100
CONF
    grep -q '^avail.audit_log' "$conf" ||
        echo "avail.audit_log = $root/var/log/keytier/audit.jsonl" >>"$conf"
    chmod 0644 "$conf"
}

# kt_unit ARGS...: the installed keytier with the unit's --config, as the
# unit's user.
kt_unit()
{
    as_unit "${exec_words[0]}" "${exec_words[1]}" "${exec_words[2]}" "$@"
}

unit_run()
{
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root to run as the unit's user"; exit 77; }
    unit=dest$(installed keytier-worker.service)
    libdir=$(meson introspect "$build" --buildoptions |
        jq -r '.[] | select(.name == "libdir") | .value')
    libdir=$prefix/$libdir
    PIN="unit-pin-1"
    unit_setup
    assert_eq "--config" "${exec_words[1]}" "ExecStart's second word"
    assert_eq "worker" "${exec_words[*]:3}" "ExecStart's command"
    kt_log "tokens, two DEPs and a mailbox item as the unit's user"
    local t uri_a uri_b uri_a2 uri_b2 dep1 dep2 mig
    local pin=$root/var/lib/keytier/pin
    for t in vault-a vault-b svc; do
        kt_unit token init --module "$module" --label "$t" --so-pin-file \
            "$pin" --pin-file "$pin" >/dev/null || kt_fail "token init $t as $user"
    done
    keygen() { kt_unit token keygen --module "$module" --token "$1" \
        --label "$2" --type aes256 --pin-file "$pin"; }
    uri_a=$(keygen vault-a root-a) && uri_b=$(keygen vault-b root-b) &&
        uri_a2=$(keygen vault-a root-a2) && uri_b2=$(keygen vault-b root-b2) ||
        kt_fail "keygen as $user"
    dep1=$(kt_unit --json dep create --tenant acme --workload Exchange \
        --key-a "$uri_a" --key-b "$uri_b" | jq -r .dep_id) || kt_fail "dep 1"
    kt_unit mailbox create --tenant acme --dep "$dep1" alice >/dev/null ||
        kt_fail "mailbox create"
    head -c 5000 /dev/urandom >"$root/run/keytier/pt"
    chmod 0644 "$root/run/keytier/pt"
    kt_unit encrypt --tenant acme --mailbox alice -i "$root/run/keytier/pt" \
        -o "$root/run/keytier/blob" || kt_fail "encrypt"
    dep2=$(kt_unit --json dep create --tenant acme --workload Exchange \
        --key-a "$uri_a2" --key-b "$uri_b2" | jq -r .dep_id) || kt_fail "dep 2"
    mig=$(kt_unit --json assign --tenant acme --all --dep "$dep2" |
        jq -r .migration_id) || kt_fail "assign"
    status() { kt_unit --json migrate --tenant acme --status "$mig" | jq -r "$1"; }
    assert_eq false "$(status .finished)" "the migration before the worker"

    kt_log "ExecStart as $user: the queued mailbox migrated"
    unit_exec "${exec_words[@]}" >"$KT_TMP/worker.out" 2>"$KT_TMP/worker.err" &
    local pid=$! i
    for i in $(seq 1 60); do
        [ "$(status .finished)" = true ] && break
        kill -0 "$pid" 2>/dev/null ||
            kt_fail "the worker exited: $(cat "$KT_TMP/worker.err")"
        sleep 0.5
    done
    assert_eq true "$(status .finished)" "the migration after 30 s of worker"
    assert_eq 1 "$(status .done)" "mailboxes migrated"
    assert_eq "$uid" "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" \
        "the worker's user id"
    kt_unit decrypt --tenant acme --mailbox alice -i "$root/run/keytier/blob" \
        -o "$root/run/keytier/back" || kt_fail "decrypt after the migration"
    cmp -s "$root/run/keytier/pt" "$root/run/keytier/back" ||
        kt_fail "the item reads back changed"
    kt_unit dep show --tenant acme "$dep2" >/dev/null || kt_fail "dep show"

    local sig stop
    sig=$(unit_key KillSignal)
    stop=$(unit_key TimeoutStopSec)
    kt_log "KillSignal ($sig): exit 0 within TimeoutStopSec ($stop s)"
    kill -s "${sig#SIG}" "$pid"
    for i in $(seq 1 $((stop * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    ! kill -0 "$pid" 2>/dev/null || kt_fail "the worker still runs ${stop} s after $sig"
    local rc=0
    wait "$pid" || rc=$?
    assert_eq 0 "$rc" "the worker's exit after $sig: $(cat "$KT_TMP/worker.err")"
    assert_contains "$(cat "$KT_TMP/worker.err")" "stopped by a signal"
    # what the unit's user made is its own, nothing readable by others
    [ -z "$(find "$root/var/lib/keytier" -not -user "$uid")" ] ||
        kt_fail "files under /var/lib/keytier not owned by $user"
    [ -z "$(find "$root/var/lib/keytier" -type f -perm /077)" ] ||
        kt_fail "files under /var/lib/keytier open to others (UMask)"
}

case $mode in
layout)
    for f in "${files[@]}"; do
        case $f in
        "$prefix"/*) ;;
        *) kt_fail "$f is installed outside the prefix $prefix" ;;
        esac
        case ${f##*/} in
        kt-bench | bench-*) kt_fail "benchmark $f is installed" ;;
        esac
    done
    for n in bin/keytier libkeytier.so keytier.h keytier-pkcs11.so \
        keytier.module keytier.pc LICENSE keytier.conf.example \
        keytier-lib.conf.example keytier.1 keytier.conf.5 keytier-pkcs11.8 \
        keytier-worker.service sysusers.d/keytier.conf \
        tmpfiles.d/keytier.conf; do
        installed "$n" >/dev/null
    done
    pc=$(installed keytier.pc)
    req=$(sed -n 's/^Requires.private: *//p' "dest$pc")
    for lib in libcrypto sqlite3 p11-kit-1 json-c; do
        assert_contains " ${req//,/ } " " $lib " "keytier.pc Requires.private"
    done
    grep -q 'Apache License' "dest$(installed LICENSE)" ||
        kt_fail "LICENSE is not the Apache License"
    comp=$(installed bash-completion/completions/keytier)
    grep -q 'complete -F _keytier keytier' "dest$comp" ||
        kt_fail "no bash completion at $comp"
    # The module file names the module as installed.
    so=$(installed keytier-pkcs11.so)
    line=$(grep '^module:' "dest$(installed keytier.module)")
    case $line in
    "module: $so" | "module: keytier-pkcs11.so") ;;
    *) kt_fail "keytier.module says '$line'; the module is at $so" ;;
    esac
    grep -q '^u keytier ' "dest$(installed sysusers.d/keytier.conf)" ||
        kt_fail "sysusers.d/keytier.conf makes no keytier user"
    for d in /var/lib/keytier /var/log/keytier /run/keytier; do
        grep -q "^d $d " "dest$(installed tmpfiles.d/keytier.conf)" ||
            kt_fail "tmpfiles.d/keytier.conf makes no $d"
    done
    ;;
man)
    for n in keytier.1 keytier.conf.5 keytier-pkcs11.8; do
        page=dest$(installed "$n")
        MANWIDTH=80 man --warnings -l "$page" >"$n.txt" 2>"$n.err" ||
            kt_fail "man -l $n failed: $(cat "$n.err")"
        [ ! -s "$n.err" ] || kt_fail "man -l $n warns: $(cat "$n.err")"
        grep -q '^NAME' "$n.txt" || kt_fail "man -l $n: no NAME section"
        ! grep -q '@[A-Z_]*@' "$n.txt" || kt_fail "$n: a placeholder is left"
    done
    ;;
systemd)
    unit=dest$(installed keytier-worker.service)
    bin=$(installed bin/keytier)
    mkdir units
    sed "s|^ExecStart=[^ ]*|ExecStart=$KT_TMP/dest$bin|" "$unit" \
        >units/keytier-worker.service
    grep -q "^ExecStart=$KT_TMP/dest$bin --config .* worker$" \
        units/keytier-worker.service || kt_fail "ExecStart: $(grep ^ExecStart "$unit")"
    for key in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes \
        LimitCORE=0 MemoryDenyWriteExecute=yes User=keytier; do
        grep -qx "$key" "$unit" || kt_fail "the unit lacks $key"
    done
    man1=$(installed keytier.1)
    out=$(MANPATH=$KT_TMP/dest${man1%/man1/*} \
        systemd-analyze verify units/keytier-worker.service 2>&1) ||
        kt_fail "systemd-analyze verify: $out"
    assert_eq "$out" "" "systemd-analyze verify"
    ;;
run)
    unit_run
    ;;
*) kt_fail "unknown mode $mode" ;;
esac
