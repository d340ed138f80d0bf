#!/usr/bin/env bash
# bash completion (tools/cli/keytier.bash-completion) against the built
# keytier: the first word offers every command family of `keytier --help`,
# the second a family's verbs, later words the command's own options from
# its --help; --version and the global options complete.
. "$(dirname "$0")/../common.sh"
kt_tmpdir
# The completion runs the keytier it completes for: the one under test.
# shellcheck source=/dev/null
. "$KT_SOURCE_ROOT/tools/cli/keytier.bash-completion"
complete_line()
{
    COMP_WORDS=("$KT_CLI" "$@")
    COMP_CWORD=$#
    COMPREPLY=()
    _keytier
    echo "${COMPREPLY[*]}"
}
help=$("$KT_CLI" --help)
families=$(complete_line "")
for f in token dep mailbox status encrypt decrypt audit approval secret offboard health stats; do
    assert_contains " $families " " $f " "families offered"
    assert_contains "$help" "  $f" "keytier --help"
done
assert_eq "$(complete_line ap)" "approval" "completing 'ap'"
assert_eq "$(complete_line token "")" "init list keygen destroy-key" "token verbs"
assert_eq "$(complete_line approval fi)" "fingerprint" "a verb past the column"
assert_contains "$(complete_line status "")" "--tenant" "status: no verbs, its options"
assert_eq "$(complete_line --v)" "--version" "global options"
opts=$(complete_line token init --)
for o in --label --module --so-pin-file --json; do
    assert_contains " $opts " " $o " "token init options"
done
opts=$(complete_line --json encrypt --)
assert_contains " $opts " " --mailbox " "encrypt options after --json"
opts=$(complete_line stats --)
for o in --prometheus --output --json; do
    assert_contains " $opts " " $o " "stats options"
done
assert_eq "$(complete_line stats --prometheus -o "$KT_TMP/ho")" "$KT_TMP/home" \
    "stats -o completes a file name"
