#!/usr/bin/env bash
# s3gate's two commands.
#   ./run.sh             run the gateway on port 5000 (embedded SeaweedFS unless S3GATE_S3_ENDPOINT is set)
#   ./run.sh test [ARGS] run the whole test suite (ARGS go to pytest)
# Anything else is passed to the `s3gate` command, e.g. ./run.sh users add alice
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY=${PYTHON:-python3}
mode=${1:-serve}
extras=""
[ "$mode" = test ] && extras="[test]"

# (Re)install when setup.cfg/setup.py change or the test extras are first needed.
want="$(cat setup.cfg setup.py | sha256sum | cut -c1-16)$extras"
stamp="$VENV/.s3gate-installed"
if [ ! -x "$VENV/bin/python" ]; then
    echo "run.sh: creating virtualenv in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$want" ] && [ "$have" != "${want%\[test\]}[test]" ]; then
    echo "run.sh: installing s3gate$extras into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$extras"
    echo "$want" > "$stamp"
fi

# The system programs the test suite drives for real (Debian/Ubuntu package names).
system_pieces() {
    local need=() cmd pkg
    for pair in nginx:nginx curl:curl wget:wget openssl:openssl; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
    done
    # The web page's tests drive Debian's Chromium through Playwright (tests/ui).
    [ -x /usr/bin/chromium ] || need+=(chromium)
    [ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
    # The shared users store's tests start a throwaway PostgreSQL server (tests/postgres.py).
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing ${need[*]} (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "run.sh: the tests need ${need[*]}; install them first:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
}

case "$mode" in
    test)
        shift
        system_pieces
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    serve)
        [ $# -gt 0 ] && shift
        exec "$VENV/bin/s3gate" serve "$@"
        ;;
    *)
        exec "$VENV/bin/s3gate" "$@"
        ;;
esac
