#!/usr/bin/env bash
# Runs the public PKCS#11 conformance suites against keytier and SoftHSM2
# side by side, each on fresh tokens in a temporary directory, and prints
# one line per suite and module. The suites are not part of keytier: fetch
# and build them yourself (docs/CONFORMANCE.md says how), then
#
#   tools/conformance.sh [--pkcs11test DIR] [--p11test DIR] [--module SO]
#                        [--softhsm SO] [--keep DIR]
#
#   --pkcs11test DIR  a built google/pkcs11test checkout (DIR/pkcs11test)
#   --p11test DIR     a built OpenSC checkout (DIR/src/tests/p11test/p11test
#                     and DIR/src/tools/pkcs11-tool)
#   --module SO       keytier-pkcs11.so (default: build/module/ of this tree)
#   --softhsm SO      libsofthsm2.so (default: Debian's); "none" skips it
#   --keep DIR        write every log there instead of a removed temp dir
#
# keytier runs with legacy_mechanisms = yes: both suites use DES3 or
# RSA-1024 keys for most of their tests. The exit status is 0 when every
# run completed (whatever it found), 1 when a suite could not be run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module=$root/build/module/keytier-pkcs11.so
softhsm=/usr/lib/softhsm/libsofthsm2.so
pkcs11test= p11test= keep=
while [ $# -gt 0 ]; do
  case $1 in
    --pkcs11test) pkcs11test=$(cd "$2" && pwd); shift 2 ;;
    --p11test) p11test=$(cd "$2" && pwd); shift 2 ;;
    --module) module=$(readlink -f "$2"); shift 2 ;;
    --softhsm) softhsm=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "conformance.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$pkcs11test$p11test" ]; then
  echo "conformance.sh: name at least one suite: --pkcs11test DIR or --p11test DIR" >&2
  exit 2
fi
[ -f "$module" ] || { echo "conformance.sh: no module at $module: build first (meson setup build && ninja -C build) or pass --module" >&2; exit 2; }
if [ -n "$keep" ]; then
  mkdir -p "$keep"; work=$(cd "$keep" && pwd)
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi

# kt_token DIR SO_PIN USER_PIN LABEL: a keytier configuration in DIR with
# legacy mechanisms on and one initialised token; prints the config path.
kt_token()
{
  local d=$1
  rm -rf "$d"; mkdir -p "$d/tok"
  printf 'token_dir = %s/tok\npin_kdf_cost = 10\nlegacy_mechanisms = yes\nlog_level = error\n' "$d" > "$d/keytier.conf"
  KEYTIER_CONF=$d/keytier.conf pkcs11-tool --module "$module" --init-token \
    --label "$4" --so-pin "$2" --slot-index 0 > "$d/init.log" 2>&1 &&
  KEYTIER_CONF=$d/keytier.conf pkcs11-tool --module "$module" --token-label "$4" \
    --login --login-type so --so-pin "$2" --init-pin --pin "$3" >> "$d/init.log" 2>&1 ||
    { echo "conformance.sh: could not initialise a keytier token (log: $d/init.log)" >&2; return 1; }
  echo "$d/keytier.conf"
}

# sh_token DIR SO_PIN USER_PIN LABEL: the same for SoftHSM2.
sh_token()
{
  local d=$1
  rm -rf "$d"; mkdir -p "$d/tok"
  echo "directories.tokendir = $d/tok" > "$d/softhsm2.conf"
  SOFTHSM2_CONF=$d/softhsm2.conf softhsm2-util --init-token --free \
    --label "$4" --so-pin "$2" --pin "$3" >/dev/null
  echo "$d/softhsm2.conf"
}

# slot_of SO LABEL: the slot ID of the token labelled LABEL.
slot_of()
{
  local hex
  hex=$(pkcs11-tool --module "$1" -L 2>/dev/null |
    awk -v l="$2" '/^Slot [0-9]/ {s = $3; gsub(/[():]/, "", s)}
                   $0 ~ "token label *: *" l "$" {print s; exit}')
  [ -n "$hex" ] || return 1
  printf '%d\n' "$hex"
}

run_pkcs11test()
{
  local name=$1 so=$2 log=$work/pkcs11test-$1.log slot
  slot=$(slot_of "$so" p11t)
  (cd "$pkcs11test" && ./pkcs11test -m "$(basename "$so")" -l "$(dirname "$so")" \
     -u 12345678 -o 87654321 -s "$slot") > "$log" 2>&1 || true
  local passed failed
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\./\1/p' "$log")
  failed=$(sed -n 's/^ *\([0-9]*\) FAILED TESTS\{0,1\}$/\1/p' "$log")
  if [ -z "$passed" ]; then
    echo "pkcs11test  $name: did not complete (log: $log)"; return 1
  fi
  echo "pkcs11test  $name: ${failed:-0} failed, $passed passed"
}

# p11test_keys SO: the keys of p11test's runtest.sh set-up, made with the
# pkcs11-tool of the same OpenSC tree; certificates for RSA and EC keys.
p11test_keys()
{
  local so=$1 tool=$p11test/src/tools/pkcs11-tool t
  local pairs=("RSA:1024 01 RSA_auth 1" "RSA:2048 02 RSA2048 1"
    "RSA:3072 09 RSA3072 1" "RSA:4096 10 RSA4096 1"
    "EC:secp256r1 03 ECC_auth 1" "EC:secp521r1 04 ECC521 1"
    "EC:edwards25519 05 EDDSA 0")
  for t in "${pairs[@]}"; do
    set -- $t
    "$tool" --module "$so" --keypairgen --key-type="$1" --login --pin=123456 \
      --extractable --usage-wrap --usage-sign --usage-decrypt --usage-derive \
      --label="$3" --id="$2" || return 1
    [ "$4" = 1 ] || continue
    GNUTLS_PIN=123456 certtool --generate-self-signed --outfile="$work/c.pem" \
      --template="$p11test/src/tests/p11test/cert.cfg" --provider="$so" \
      --load-privkey "pkcs11:object=$3;type=private" \
      --load-pubkey "pkcs11:object=$3;type=public" || return 1
    openssl x509 -in "$work/c.pem" -outform DER -out "$work/c.der"
    "$tool" --module "$so" --write-object "$work/c.der" --type=cert --id="$2" \
      --label="$3" || return 1
  done
  for t in "aes:16 07 AES128" "aes:32 08 AES256"; do
    set -- $t
    "$tool" --module "$so" --keygen --key-type="$1" --login --pin=123456 \
      --extractable --usage-wrap --usage-decrypt --label="$3 key" --id="$2" ||
      return 1
  done
}

run_p11test()
{
  local name=$1 so=$2 log=$work/p11test-$1.log
  if ! p11test_keys "$so" > "$work/p11test-$name-setup.log" 2>&1; then
    echo "p11test     $name: set-up failed (log: $work/p11test-$name-setup.log)"
    return 1
  fi
  (cd "$p11test/src/tests/p11test" &&
     ./p11test -v -m "$so" -o "$work/p11test-$name.json" -p 123456) > "$log" 2>&1 || true
  local passed failed skipped
  if ! grep -q '^\[==========\] [0-9]* test(s) run\.' "$log"; then
    echo "p11test     $name: did not complete (log: $log)"; return 1
  fi
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log")
  skipped=$(grep '^\[  SKIPPED \] [a-z]' "$log" | sed 's/^\[  SKIPPED \] //' | sort -u | tr '\n' ' ')
  failed=$(grep '^\[  FAILED  \] [a-z]' "$log" | sed 's/^\[  FAILED  \] //' | sort -u | tr '\n' ' ')
  echo "p11test     $name: ${passed:-0} groups passed; failed: ${failed:-none}; skipped: ${skipped:-none}"
}

status=0
if [ -n "$pkcs11test" ]; then
  [ -x "$pkcs11test/pkcs11test" ] || { echo "conformance.sh: $pkcs11test/pkcs11test is not built (run make there)" >&2; exit 2; }
  KEYTIER_CONF=$(kt_token "$work/kt-pkcs11test" 87654321 12345678 p11t)
  export KEYTIER_CONF
  run_pkcs11test keytier "$module" || status=1
  if [ "$softhsm" != none ]; then
    SOFTHSM2_CONF=$(sh_token "$work/sh-pkcs11test" 87654321 12345678 p11t)
    export SOFTHSM2_CONF
    run_pkcs11test softhsm2 "$softhsm" || status=1
  fi
fi
if [ -n "$p11test" ]; then
  [ -x "$p11test/src/tests/p11test/p11test" ] && [ -x "$p11test/src/tools/pkcs11-tool" ] ||
    { echo "conformance.sh: $p11test is not a built OpenSC tree (src/tests/p11test/p11test)" >&2; exit 2; }
  KEYTIER_CONF=$(kt_token "$work/kt-p11test" 12345678 123456 "SC test")
  export KEYTIER_CONF
  run_p11test keytier "$module" || status=1
  if [ "$softhsm" != none ]; then
    SOFTHSM2_CONF=$(sh_token "$work/sh-p11test" 12345678 123456 "SC test")
    export SOFTHSM2_CONF
    run_p11test softhsm2 "$softhsm" || status=1
  fi
fi
exit $status
