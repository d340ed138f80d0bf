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
*) kt_fail "unknown mode $mode" ;;
esac
