#!/usr/bin/env bash
# The module as p11-kit and gnutls users load it: with its p11-kit module
# file installed, `p11-kit list-modules` shows the token and
# `p11tool --list-all` lists its objects by PKCS#11 URI.
#
#   asym-p11kit.sh keytier|softhsm2
#
# For keytier the module and its module file come from `meson install
# --destdir` of the build under test; the module file is checked to name the
# module as installed, then pointed at the destdir's copy. Nothing is written to system
# directories: as root (p11-kit then reads only the system module config
# directory) the checks run in a private mount namespace (unshare -m) where
# the test's own directories are bind-mounted over p11-kit's; otherwise they
# run with the test's own HOME, whose user config p11-kit reads.
# run_tool OUT COMMAND...: runs COMMAND with its output in OUT, bounded in
# time. With the ASan runtime preloaded (sanitizer build), libp11-kit's
# destructor deadlocks in freelocale() at exit (glibc's locale lock; seen
# with no keytier module loaded at all), so there the process is stopped by
# PID once it has had time to print; its output is checked all the same.
# Without the preload a tool that does not exit on its own fails the test.
run_tool()
{
    local out=$1 pid i
    shift
    # line-buffered: under the ASan preload the exit-time flush never runs
    stdbuf -oL -eL "$@" >"$out" 2>&1 &
    pid=$!
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        case ${LD_PRELOAD:-} in
        *libasan*) [ $i -ge 100 ] && break ;;
        esac
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null || true
        case ${LD_PRELOAD:-} in
        *libasan*) return 0 ;;
        *) echo "$1 did not exit" >>"$out"; return 1 ;;
        esac
    fi
    wait "$pid"
}

if [ "${1:-}" = --inside ]; then
    # In the private mount namespace: runs the tools, leaves their output
    # in $KT_TMP for the outer script to check.
    set -euo pipefail
    mount --bind "$KT_TMP/p11kit-modules" "$P11KIT_CONFIGS"
    run_tool "$KT_TMP/list-modules.out" p11-kit list-modules
    GNUTLS_PIN=123456 run_tool "$KT_TMP/p11tool.out" \
        p11tool --login --list-all "pkcs11:token=asym"
    exit 0
fi

. "$(dirname "$0")/../common.sh"
self=$(readlink -f "$0")

kt_tmpdir
kt_module_use "$1"
kt_token_init asym 87654321 123456
cd "$KT_TMP"
p11() { kt_p11 --token-label asym --login --pin 123456 "$@"; }
expect_ok p11 --keypairgen --key-type rsa:2048 --id 01 --label rsa1
expect_ok p11 --keypairgen --key-type EC:prime256v1 --id 02 --label ec1

P11KIT_CONFIGS=$(pkg-config p11-kit-1 --variable=p11_module_configs)
PKCS11_MODULE_DIR=$(pkg-config p11-kit-1 --variable=p11_module_path)
export P11KIT_CONFIGS PKCS11_MODULE_DIR
mkdir -p p11kit-modules
case $1 in
keytier)
    kt_log "meson install into a destdir"
    [ -n "${KT_BUILD_ROOT:-}" ] || kt_fail "KT_BUILD_ROOT is not set"
    expect_ok meson install -C "$KT_BUILD_ROOT" --no-rebuild --quiet \
        --destdir "$KT_TMP/dest"
    # Where this build installs them (under its prefix: p11-kit's own
    # directories only with prefix /usr).
    installed=$(meson introspect "$KT_BUILD_ROOT" --installed)
    inst() { jq -r --arg n "$1" '.[] | select(endswith("/" + $n))' <<<"$installed"; }
    mod_file=$(inst keytier.module)
    mod_so=$(inst keytier-pkcs11.so)
    [ -n "$mod_file" ] && [ -f "dest$mod_file" ] ||
        kt_fail "meson install did not install keytier.module (${mod_file:-not listed})"
    [ -n "$mod_so" ] && [ -f "dest$mod_so" ] ||
        kt_fail "meson install did not install the module (${mod_so:-not listed})"
    # The module file names the module p11-kit can load: by name in
    # p11-kit's module directory, else by its installed path.
    line=$(grep '^module:' "dest$mod_file")
    if [ "${mod_so%/*}" = "$PKCS11_MODULE_DIR" ]; then want=keytier-pkcs11.so; else want=$mod_so; fi
    [ "$line" = "module: $want" ] ||
        kt_fail "keytier.module says '$line', expected 'module: $want'"
    sed "s|^module: .*|module: $KT_TMP/dest$mod_so|" "dest$mod_file" \
        >p11kit-modules/keytier.module
    module_name=keytier
    ;;
softhsm2)
    echo "module: $KT_P11_MODULE" >p11kit-modules/softhsm2-asym.module
    module_name=softhsm2-asym
    ;;
esac

if [ "$(id -u)" = 0 ]; then
    kt_log "p11-kit and p11tool in a private mount namespace"
    expect_ok unshare -m bash "$self" --inside
else
    kt_log "p11-kit and p11tool with the test's own HOME"
    mkdir -p "$HOME/.config/pkcs11/modules"
    cp p11kit-modules/*.module "$HOME/.config/pkcs11/modules/"
    run_tool list-modules.out p11-kit list-modules
    GNUTLS_PIN=123456 run_tool p11tool.out \
        p11tool --login --list-all "pkcs11:token=asym"
fi

list=$(cat list-modules.out)
assert_contains "$list" "$module_name: " "p11-kit list-modules"
assert_contains "$list" "token: asym" "p11-kit list-modules"
out=$(cat p11tool.out)
for obj in "id=%01;object=rsa1;type=public" "id=%01;object=rsa1;type=private" \
    "id=%02;object=ec1;type=public" "id=%02;object=ec1;type=private"; do
    grep -Eq "URL: pkcs11:.*token=asym;$obj\$" <<<"$out" ||
        kt_fail "p11tool --list-all does not list $obj: $out"
done
# The system directories are untouched.
[ ! -e "$P11KIT_CONFIGS/$module_name.module" ] ||
    kt_fail "a module file was left in $P11KIT_CONFIGS"
kt_log "ok"
