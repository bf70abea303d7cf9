#!/usr/bin/env bash
# Installs Matrix Synapse into a virtual environment, writes a loopback-only
# configuration with the SQLite backend, registers the bench's two users and
# starts the homeserver in the background, for `chatsync bench --suite synapse`.
#
#   scripts/synapse.sh            # install if needed, configure, start
#   scripts/synapse.sh stop       # stop it
#
# Environment (all optional):
#   SYNAPSE_DIR   where the venv, config, database and logs live
#                 (default: ${XDG_CACHE_HOME:-$HOME/.cache}/chatsync-synapse)
#   SYNAPSE_PORT  client API port on 127.0.0.1 (default 8008)
#
# Then run the bench with
#   CHATSYNC_BENCH_SYNAPSE_URL=http://127.0.0.1:8008 chatsync bench --suite synapse
#
# The bench logs in as `bencha` / `benchb` (password `chatsync-bench-pw`).
# Synapse's per-user message rate limit is raised in the generated config,
# otherwise it would refuse sends after a burst of 10 and we would measure
# the limiter rather than the server.
set -euo pipefail

DIR="${SYNAPSE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatsync-synapse}"
PORT="${SYNAPSE_PORT:-8008}"
VENV="$DIR/venv"
CONF="$DIR/homeserver.yaml"
PASSWORD="chatsync-bench-pw"
SERVER_NAME="localhost"

if [[ "${1:-}" == "stop" ]]; then
  if [[ -f "$DIR/homeserver.pid" ]]; then
    kill "$(cat "$DIR/homeserver.pid")" 2>/dev/null || true
    rm -f "$DIR/homeserver.pid"
    echo "synapse stopped"
  else
    echo "synapse is not running (no $DIR/homeserver.pid)"
  fi
  exit 0
fi

mkdir -p "$DIR"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating the virtual environment in $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
  echo "installing matrix-synapse (pip)"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet matrix-synapse
fi
"$VENV/bin/python" -c 'import synapse; print("synapse", synapse.__version__)'

if [[ ! -f "$CONF" ]]; then
  echo "generating $CONF"
  (cd "$DIR" && "$VENV/bin/python" -m synapse.app.homeserver \
    --server-name "$SERVER_NAME" \
    --config-path "$CONF" \
    --data-directory "$DIR" \
    --generate-config \
    --report-stats=no)
  "$VENV/bin/python" - "$CONF" "$PORT" "$DIR" <<'EOF'
import sys, yaml
path, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path) as f:
    conf = yaml.safe_load(f)
# Loopback only, our port, no IPv6 dependency.
conf["listeners"] = [{
    "port": port,
    "tls": False,
    "type": "http",
    "x_forwarded": False,
    "bind_addresses": ["127.0.0.1"],
    "resources": [{"names": ["client"], "compress": False}],
}]
# The SQLite backend (the generated default), kept explicit.
conf["database"] = {"name": "sqlite3", "args": {"database": f"{data}/homeserver.db"}}
# Measure the server, not its rate limiter.
big = {"per_second": 100000, "burst_count": 100000}
conf["rc_message"] = big
conf["rc_registration"] = big
conf["rc_login"] = {"address": big, "account": big, "failed_attempts": big}
conf["rc_joins"] = {"local": big, "remote": big}
conf["rc_invites"] = {"per_room": big, "per_user": big, "per_issuer": big}
conf["enable_registration"] = False
conf["presence"] = {"enabled": False}
conf["suppress_key_server_warning"] = True
conf["trusted_key_servers"] = []
with open(path, "w") as f:
    yaml.safe_dump(conf, f)
EOF
fi

if [[ -f "$DIR/homeserver.pid" ]] && kill -0 "$(cat "$DIR/homeserver.pid")" 2>/dev/null; then
  echo "synapse already running (pid $(cat "$DIR/homeserver.pid"))"
else
  echo "starting synapse on 127.0.0.1:$PORT (log: $DIR/homeserver.out)"
  # `exec`: the background job is Synapse itself, holding none of this
  # script's output (a pipe such as `scripts/synapse.sh | tail` ends).
  (cd "$DIR" && exec nohup "$VENV/bin/python" -m synapse.app.homeserver \
    --config-path "$CONF" >"$DIR/homeserver.out" 2>&1 </dev/null) &
  echo $! >"$DIR/homeserver.pid"
fi

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null \
  || { echo "synapse did not come up; see $DIR/homeserver.out" >&2; exit 1; }

for user in bencha benchb; do
  "$VENV/bin/register_new_matrix_user" -c "$CONF" -u "$user" -p "$PASSWORD" --no-admin \
    "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true # already registered
done
echo "synapse ready: CHATSYNC_BENCH_SYNAPSE_URL=http://127.0.0.1:$PORT (users bencha, benchb)"
