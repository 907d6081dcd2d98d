#!/usr/bin/env bash
# Mutation testing (mutmut) of the code that guards s3gate's promises: who may
# do what, and all-or-nothing uploads. Not part of CI: a run takes minutes to
# hours on 2 cores. See bench/README.md, "Mutation testing".
#
#   bench/mutation.sh                 # every target below, one after another
#   bench/mutation.sh access seed     # just these targets
#   MUTATION_DIR=/tmp/mut bench/mutation.sh files
#   MUTATION_ONLY='*Throttle*__init__*' bench/mutation.sh auth   # only these mutants (fnmatch)
#
# Each target is mutated in its own COPY of the project (MUTATION_DIR/TARGET,
# default /tmp/s3gate-mutation), never in the working tree: mutmut rewrites
# the sources it mutates, and others may be editing this tree meanwhile. The
# copy's setup.cfg gets a [mutmut] section; the project's own is untouched.
# Each mutant runs only the fast tests (moto, no SeaweedFS) that exercise the
# mutated function, from the target's list below. The auth target is narrowed
# to the modules that decide who may do what (passwords, tokens and session
# ids, rules, sessions and token expiry in service.py, throttling, CSRF) and
# to the SQLite half of tests/auth (-m 'not users_on_postgresql': the PostgreSQL
# parametrization of users_backend repeats the same store tests on a slower
# database). Not mutated: the CLI, the SQL store and its migrations, config
# parsing, audit and bootstrap: those are the authstore target (the SQL store
# behind every decision, the audit log, auth settings, first-start bootstrap
# and the users/tokens commands), on SQLite as well: what only PostgreSQL runs
# (PostgresDatabase, the SQL dialect translation, the shared journal) is left
# unreached there: the authshared target runs that on PostgreSQL. Results: `mutmut results`
# is printed and saved to MUTATION_DIR/TARGET/results.txt; a surviving
# mutant's diff is `cd MUTATION_DIR/TARGET && ../../path/to/python -m mutmut show NAME`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${MUTATION_DIR:-/tmp/s3gate-mutation}
JOBS=${MUTATION_JOBS:-2}

if ! "$PY" -c 'import mutmut' 2>/dev/null; then
    echo "mutmut is not installed: $PY -m pip install 'mutmut==3.8.1'" >&2
    exit 2
fi

# target -> "files to mutate (globs)|fast tests each mutant may run"
declare -A TARGETS=(
    [access]="s3gate/http/access.py|tests/http/test_permissions.py tests/http/test_cross_site.py tests/http/test_listing.py tests/auth/test_http_access.py tests/auth/test_links.py tests/auth/test_csrf.py"
    [files]="s3gate/http/files.py|tests/http"
    [seed]="s3gate/http/seed.py|tests/http/test_permissions.py tests/http/test_seed.py tests/http/test_cross_site.py"
    [writer]="s3gate/storage/writer.py|tests/storage/test_writer.py tests/http/test_files.py"
    [auth]="s3gate/auth/passwords.py s3gate/auth/credentials.py s3gate/auth/rules.py s3gate/auth/service.py s3gate/auth/throttle.py s3gate/auth/csrf.py|tests/auth"
    [authstore]="s3gate/auth/store.py s3gate/auth/sql.py s3gate/auth/database.py s3gate/auth/migrations.py s3gate/auth/audit.py s3gate/auth/config.py s3gate/auth/bootstrap.py s3gate/auth/cli.py|tests/auth"
    # What only PostgreSQL runs: the shared upload journal, leases and workers of a
    # cluster, and `s3gate users migrate-to` (a throwaway PostgreSQL per mutant).
    [authshared]="s3gate/auth/sql.py s3gate/auth/database.py s3gate/auth/cli.py|tests/storage/test_journal.py tests/auth/test_cli.py tests/auth/test_store.py"
)
# target -> extra pytest arguments, one per line
declare -A PYTEST_ARGS=(
    [auth]=$'-m\nnot users_on_postgresql'
    [authstore]=$'-m\nnot users_on_postgresql'
)
ORDER=(access seed files writer auth authstore authshared)

run_target() {
    local name=$1 spec=${TARGETS[$1]}
    local globs=${spec%%|*} tests=${spec#*|}
    local dir=$OUT/$name
    echo "== $name: mutating $globs; tests: $tests"
    rm -rf "$dir"
    mkdir -p "$dir"
    # A copy without the venv, git data, caches or earlier mutants.
    (cd "$ROOT" && tar --exclude=./.venv --exclude=./.git --exclude=./mutants \
        --exclude='__pycache__' --exclude='*.egg-info' -cf - .) | tar -xf - -C "$dir"
    {
        echo
        echo "[mutmut]"
        echo "source_paths = s3gate"
        # mutmut runs the tests in its mutants/ copy: some read the docs.
        echo "also_copy ="
        echo "    README.md"
        echo "    docs"
        echo "only_mutate ="
        for g in $globs; do echo "    $g"; done
        echo "pytest_add_cli_args_test_selection ="
        for t in $tests; do if [ -e "$dir/$t" ]; then echo "    $t"; fi; done
        # -p no:cacheprovider: no .pytest_cache written into the copy's tests.
        echo "pytest_add_cli_args ="
        echo "    -p"
        echo "    no:cacheprovider"
        if [ -n "${PYTEST_ARGS[$name]-}" ]; then
            while IFS= read -r arg; do echo "    $arg"; done <<<"${PYTEST_ARGS[$name]}"
        fi
    } >>"$dir/setup.cfg"
    (
        cd "$dir"
        # The mutants must be what gets imported, not the editable install of $ROOT.
        local only=()
        read -ra only <<<"${MUTATION_ONLY-}"  # patterns, split on spaces, never globbed here
        "$PY" -m mutmut run --max-children "$JOBS" "${only[@]}" || echo "mutmut run exited $?" >&2
        "$PY" -m mutmut results --all true >results-all.txt 2>&1 || true
        "$PY" -m mutmut results >results.txt 2>&1 || true
        cat results.txt
    )
}

main() {
    if [ $# -eq 0 ]; then set -- "${ORDER[@]}"; fi
    for t in "$@"; do
        if [ -z "${TARGETS[$t]+x}" ]; then
            echo "unknown target $t (known: ${ORDER[*]})" >&2
            exit 2
        fi
    done
    for t in "$@"; do run_target "$t"; done
}

# One line, so bash has read all of it before anything runs: editing this
# script during a long run then cannot derail it (bash reads a script as it
# goes; a separate `exit` line was read at a shifted offset after an edit).
main "$@"; exit
