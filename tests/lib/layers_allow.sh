#!/usr/bin/env bash
# The exceptions of tools/check-layers.sh --allow, shown on a fixture of
# their own so that the proof does not depend on lib/layers.allow (which
# only shrinks, and is added to the fixture as it is): with base/ placed
# above config/, every call of config/ into base/ goes up.  Each one listed is let through, the one left out is
# refused again, and an entry whose call does not exist, or that gives no
# reason, is itself refused.
#   layers_allow.sh CHECK_LAYERS ALLOW BUILD_DIR LAYER... (bottom-up)
set -u
check=$1
lib_allow=$2
build=$3
shift 3
[ "${1-}" = base ] && [ "${2-}" = config ] ||
  { echo "lib-layers-allow: want the layers from base, config" >&2; exit 2; }
shift 2
layers=(config base "$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "lib-layers-allow: $*"; exit 1; }

bash "$check" --print "$build" lib "${layers[@]}" >"$work/print"
[ $? -eq 1 ] || fail "base/ above config/ should break the layers"
awk '$2 == "->" && $1 ~ /^lib\/config\// && $3 ~ /^lib\/base\// {
  print $1, $3, "base/ above config/ for this test" }' "$work/print" \
  >"$work/allow"
n=$(wc -l <"$work/allow")
cat "$lib_allow" >>"$work/allow"
[ "$n" -ge 2 ] || fail "want at least two calls of config/ into base/, found $n"
grep -q '^lib/config/config.c lib/base/kt_error.c ' "$work/allow" ||
  fail "config.c does not call kt_error.c"

# Every upward call listed: the layers hold.
out=$(bash "$check" --acyclic --allow "$work/allow" "$build" lib \
  "${layers[@]}")
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "every upward call listed, yet the check failed ($rc)"

# One left out, one that does not exist, one without a reason.
{
  grep -v '^lib/config/config.c lib/base/kt_error.c ' "$work/allow"
  echo "lib/base/util.c lib/ctx/ctx.c no such call"
  echo "lib/keys/tier.c lib/keys/dep.c"
} >"$work/allow2"
out=$(bash "$check" --acyclic --allow "$work/allow2" "$build" lib \
  "${layers[@]}")
rc=$?
echo "$out"
[ $rc -eq 1 ] || fail "want exit status 1, got $rc"
grep -q '^check-layers: lib/config/config.c (config) calls lib/base/kt_error.c (base, a layer above)' <<<"$out" ||
  fail "the call left out was not refused"
[ "$(grep -c ' (config) calls lib/base/' <<<"$out")" -eq 1 ] ||
  fail "a listed call was refused"
grep -q 'lib/base/util.c does not call lib/ctx/ctx.c; remove the entry' <<<"$out" ||
  fail "an entry without its call was kept"
grep -q 'want CALLER CALLEE REASON' <<<"$out" ||
  fail "an entry without a reason was kept"
