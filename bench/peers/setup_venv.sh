#!/usr/bin/env bash
# Create (or bring up to date) bench/.venv-peers with the peer job queues from
# bench/requirements-peers.txt. Idempotent: re-running only installs what is missing or
# pinned differently. Never touches the project's own .venv.
#
#   bash bench/peers/setup_venv.sh            # uses python3
#   PYTHON=python3.11 bash bench/peers/setup_venv.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
venv="${PEERS_VENV:-$bench/.venv-peers}"
req="$bench/requirements-peers.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

# A stamp of the requirements file: skip pip entirely when nothing changed.
stamp="$venv/.requirements-peers.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c \
        'import celery, redis, rq, procrastinate, psycopg' 2>/dev/null; then
    echo "$venv is up to date" >&2
    exit 0
fi

"$venv/bin/python" -m pip install --quiet -r "$req"
"$venv/bin/python" -m pip check >&2
echo "$want" > "$stamp"
"$venv/bin/python" - <<'PY' >&2
import importlib.metadata as m
print("peers venv ready:", ", ".join(f"{p} {m.version(p)}" for p in
      ("celery", "kombu", "redis", "rq", "procrastinate", "psycopg")))
PY
