# Shared by the bench scripts (sourced): how a script reports and fails.
#   say MSG   a line on stderr, prefixed with the script's name;
#   fail MSG  a load run with failed requests: said now, and kept in
#             FAILURES for the script to list and exit 1 on at the end;
#   die MSG   stop now with status 1 (after naming the runs already failed).
# A command that fails outside a test stops the run, loudly, with status 1.

SCRIPT=$(basename "$0")
FAILURES=()
say() { printf '[%s] %s\n' "$SCRIPT" "$*" >&2; }
fail() {
    say "FAILED: $*"
    FAILURES+=("$*")
}
die() {
    say "error: $*"
    [ "${#FAILURES[@]}" = 0 ] || say "and before that, ${#FAILURES[@]} runs failed (the FAILED lines above)"
    exit 1
}
trap 'say "error: exit $? from \`$BASH_COMMAND\` (line $LINENO)"; exit 1' ERR

# require_bins DIR PROFILE NAME...: stop unless each binary is in DIR, naming
# the command that builds it (levee from -p levee, the rest from the tests).
require_bins() {
    local dir=$1 profile=$2 b pkg
    shift 2
    for b in "$@"; do
        pkg=levee-tests
        [ "$b" != levee ] || pkg=levee
        [ -x "$dir/$b" ] || die "$dir/$b is missing: build it with \
\`cargo build --profile $profile --locked -p $pkg --bin $b\` (or run without SKIP_BUILD=1)"
    done
}

# finish SUMMARY: the end of a run. Exits 1 listing the failed runs if
# any (the targets were then not judged); else 3 when the summary (exit
# status SUMMARY) missed a target, 0 when it met them all.
finish() {
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        say "${#FAILURES[@]} runs failed (targets not judged):"
        for f in "${FAILURES[@]}"; do say "  $f"; done
        exit 1
    fi
    case $1 in
        0) say "every request succeeded; every target met" ;;
        3) say "every request succeeded; a target was missed (the MISSED lines above)"; exit 3 ;;
        *) die "the summary failed (exit $1)" ;;
    esac
}
