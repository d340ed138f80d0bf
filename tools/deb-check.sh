#!/usr/bin/env bash
# Builds keytier's Debian packages from this tree (dpkg-buildpackage -us -uc
# -b on a copy of it, in a temp dir), runs lintian on them (no errors
# allowed), unpacks them into a throwaway root (dpkg -x) and checks what an
# installation gives users:
#   - the packages hold what they should (the module and its p11-kit module
#     file in keytier-pkcs11, keytier.pc in libkeytier-dev, no benchmark);
#   - `keytier --version` of the root runs against the root's libkeytier;
#   - p11-kit sees the module through its module file: `p11-kit
#     list-modules`, the p11-kit proxy module (pkcs11-tool) and `p11tool
#     --list-tokens` show a token made in it; with no KEYTIER_CONF and no
#     HOME, `p11-kit list-modules` prints no error;
#   - `man -l` renders the root's man pages.
# p11-kit reads the module files of the system directory as root: the
# checks then run in a private mount namespace (unshare -m) with the root's
# directories bind-mounted over p11-kit's; otherwise with the user's own
# p11-kit config (~/.config/pkcs11/modules) in a temp HOME.
#   tools/deb-check.sh [--keep]   (--keep: leave the temp dir, print it)
# The package build is the one debian/rules does, made quick for a test
# run unless DEB_BUILD_OPTIONS is set: nocheck, parallel=<cores>,
# noautodbgsym (no -dbgsym packages to build and lint); the copy is fresh,
# so dpkg-buildpackage skips its clean (-nc). Each step prints the seconds
# since the start.
# Needs dpkg-dev, debhelper, lintian, p11-kit, p11-kit-modules, opensc,
# gnutls-bin, man-db (tools/deps.sh installs them).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
keep=no
[ "${1:-}" != --keep ] || keep=yes
work=$(mktemp -d /tmp/keytier-deb.XXXXXX)
[ $keep = yes ] && echo "deb-check: work dir $work" >&2 ||
    trap 'rm -rf "$work"' EXIT
fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
step() { echo "deb-check: [${SECONDS}s] $*" >&2; }
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck parallel=$(nproc) noautodbgsym}

step "copying the tree (tracked and untracked, not ignored files)"
mkdir "$work/src"
(cd "$src" && git ls-files -co --exclude-standard -z |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 cp --parents -t "$work/src")

step "dpkg-buildpackage -us -uc -b -nc (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
(cd "$work/src" && dpkg-buildpackage -us -uc -b -nc) >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log" >&2; fail "dpkg-buildpackage failed"; }
changes=$(ls "$work"/*.changes)
step "lintian (errors fail)"
lintian --fail-on error --tag-display-limit 0 "$changes" >"$work/lintian.log" 2>&1 ||
    { cat "$work/lintian.log" >&2; fail "lintian found errors"; }
sed 's/^/  lintian: /' "$work/lintian.log" >&2

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
deb() { ls "$work/$1"_*.deb; }
contents() { dpkg-deb -c "$(deb "$1")" | awk '{print $6}'; }
has() { contents "$1" | grep -qx "\\./$2" || fail "package $1 lacks /$2"; }
has keytier usr/bin/keytier
has keytier usr/share/man/man1/keytier.1.gz
has keytier usr/share/bash-completion/completions/keytier
has keytier usr/lib/systemd/system/keytier-worker.service
has keytier usr/lib/sysusers.d/keytier.conf
has keytier usr/lib/tmpfiles.d/keytier.conf
has libkeytier0 "usr/lib/$arch/libkeytier.so.0"
has libkeytier-dev usr/include/keytier.h
has libkeytier-dev "usr/lib/$arch/pkgconfig/keytier.pc"
has keytier-pkcs11 "usr/lib/$arch/pkcs11/keytier-pkcs11.so"
has keytier-pkcs11 usr/share/p11-kit/modules/keytier.module
for p in keytier libkeytier0 libkeytier-dev keytier-pkcs11; do
    ! contents "$p" | grep -q 'bench' || fail "package $p holds a benchmark"
done

root=$work/root
step "dpkg -x into $root"
for d in "$work"/*.deb; do dpkg -x "$d" "$root"; done
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
out=$(LD_LIBRARY_PATH=$root/usr/lib/$arch "$root/usr/bin/keytier" --version)
[ "$out" = "keytier $version (libkeytier $version)" ] ||
    fail "keytier --version says '$out', expected $version"
for page in man1/keytier.1 man5/keytier.conf.5 man8/keytier-pkcs11.8; do
    err=$(MANWIDTH=80 man --warnings -l "$root/usr/share/man/$page.gz" 2>&1 >/dev/null) ||
        fail "man -l $page failed: $err"
    [ -z "$err" ] || fail "man -l $page warns: $err"
done

# The module's token directory for the checks, and a token in it.
mkdir -m 700 "$work/tokens" "$work/home"
printf 'token_dir = %s\npin_kdf_cost = 10\n' "$work/tokens" >"$work/keytier.conf"
export KEYTIER_CONF=$work/keytier.conf
module=$root/usr/lib/$arch/pkcs11/keytier-pkcs11.so
pkcs11-tool --module "$module" --init-token --label debcheck \
    --so-pin 87654321 >"$work/init.log" 2>&1 ||
    fail "C_InitToken through the packaged module: $(cat "$work/init.log")"

# The tools, run where p11-kit reads the packaged module file; their
# output is left in $work.
run_tools()
{
    p11-kit list-modules >"$work/list.out" 2>&1 || true
    pkcs11-tool --module "/usr/lib/$arch/p11-kit-proxy.so" -L \
        >"$work/proxy.out" 2>&1 || true
    p11tool --list-tokens >"$work/p11tool.out" 2>&1 || true
    env -i PATH="$PATH" p11-kit list-modules >"$work/bare.out" 2>"$work/bare.err" || true
}
if [ "$(id -u)" = 0 ]; then
    export root arch work
    export -f run_tools
    unshare -m bash -c '
        set -e
        mount --bind "$root/usr/share/p11-kit/modules" /usr/share/p11-kit/modules
        mount --bind "$root/usr/lib/$arch/pkcs11" "/usr/lib/$arch/pkcs11"
        run_tools' || fail "the private mount namespace failed"
else
    export HOME=$work/home
    mkdir -p "$HOME/.config/pkcs11/modules"
    sed "s|^module: .*|module: $module|" \
        "$root/usr/share/p11-kit/modules/keytier.module" \
        >"$HOME/.config/pkcs11/modules/keytier.module"
    run_tools
fi
grep -q '^keytier: ' "$work/list.out" ||
    fail "p11-kit list-modules does not list keytier: $(cat "$work/list.out")"
grep -q 'token: debcheck' "$work/list.out" ||
    fail "p11-kit list-modules shows no token debcheck: $(cat "$work/list.out")"
grep -q "library-version: ${version%.*}" "$work/list.out" ||
    fail "p11-kit list-modules: library-version is not ${version%.*}"
grep -q 'debcheck' "$work/proxy.out" ||
    fail "the p11-kit proxy does not show the token: $(cat "$work/proxy.out")"
grep -q 'token=debcheck' "$work/p11tool.out" ||
    fail "p11tool --list-tokens does not show the token: $(cat "$work/p11tool.out")"
[ ! -s "$work/bare.err" ] ||
    fail "p11-kit list-modules with no KEYTIER_CONF and no HOME printed: $(cat "$work/bare.err")"
step "ok: $(cd "$work" && ls ./*.deb | tr '\n' ' ')"
