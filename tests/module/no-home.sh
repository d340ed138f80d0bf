#!/usr/bin/env bash
# The module in a daemon's environment: no KEYTIER_CONF, no HOME, no
# XDG_DATA_HOME and no system-wide file (SYSCONFDIR/keytier/keytier.conf,
# $1). It loads, shows no slots and prints nothing: programs that load
# every p11-kit module must not report it. With a HOME (the per-user
# fallback) the same programs see its free slot.
#
#   no-home.sh SYSTEM_CONF
. "$(dirname "$0")/../common.sh"
system_conf=$1
module=${KT_MODULE:-$KT_BUILD_ROOT/module/keytier-pkcs11.so}
kt_tmpdir
cd "$KT_TMP"
[ ! -e "$system_conf" ] ||
    kt_fail "$system_conf exists on this machine: the test needs a machine without it"

# bare HOME_VALUE PROGRAM ARGS...: PROGRAM with an empty environment but
# PATH, the sanitizer variables of this build and, if not empty, HOME.
bare()
{
    local home=$1 vars=("PATH=$PATH")
    shift
    [ -z "$home" ] || vars+=("HOME=$home")
    for v in LD_PRELOAD ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
        [ -z "${!v:-}" ] || vars+=("$v=${!v}")
    done
    env -i "${vars[@]}" "$@"
}

kt_log "pkcs11-tool -L with no home: no slots, no error of the module"
# pkcs11-tool's own answer to an empty slot list is "No slots." and exit 1.
rc=0
bare "" pkcs11-tool --module "$module" -L >tool.out 2>tool.err || rc=$?
assert_eq "$rc $(cat tool.err)" "1 No slots." "pkcs11-tool -L (exit, stderr)"
assert_eq "$(cat tool.out)" "Available slots:" "pkcs11-tool -L"
kt_log "p11tool --list-tokens with no home: no keytier token, nothing on stderr"
bare "" p11tool --provider "$module" --list-tokens >p11tool.out 2>p11tool.err ||
    kt_fail "exit $?: $(cat p11tool.err)"
assert_eq "$(cat p11tool.err)" "" "p11tool stderr"
assert_not_contains "$(cat p11tool.out)" "Manufacturer: keytier" "p11tool --list-tokens"

kt_log "with a HOME: the per-user token directory's free slot"
mkdir user
bare "$KT_TMP/user" pkcs11-tool --module "$module" -L >home.out 2>home.err ||
    kt_fail "exit $?: $(cat home.err)"
assert_eq "$(cat home.err)" "" "pkcs11-tool stderr"
assert_contains "$(cat home.out)" "token state:   uninitialized" "pkcs11-tool -L"

kt_log "CK_INFO libraryVersion: meson.build's major.minor"
version=$(sed -n "s/^  version : '\(.*\)',$/\1/p" "$KT_SOURCE_ROOT/meson.build")
[ -n "$version" ] || kt_fail "no version in meson.build"
bare "$KT_TMP/user" pkcs11-tool --module "$module" -I >info.out 2>&1 ||
    kt_fail "pkcs11-tool -I: $(cat info.out)"
grep -Eq "^Library +keytier software token \(ver ${version%.*}\)" info.out ||
    kt_fail "CK_INFO: $(cat info.out)"
