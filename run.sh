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

case "$mode" in
    test)
        shift
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
