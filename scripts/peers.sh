#!/usr/bin/env bash
# Installs and starts the peers `chatsync bench` compares chatsync with, for
# those who want the full table:
#   - NATS with JetStream on 127.0.0.1:4222 (left alone if one answers there)
#   - redis-server binary (the bench starts its own with appendfsync always)
#   - Matrix Synapse on 127.0.0.1:8008 (scripts/synapse.sh)
# Debian/Ubuntu packages via apt-get; Synapse via pip into a virtualenv.
#
#   scripts/peers.sh          # everything
#   scripts/peers.sh nats redis
set -euo pipefail
cd "$(dirname "$0")"

want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=(nats redis synapse)

apt_install() {
  if command -v apt-get >/dev/null; then
    [[ -n "${APT_UPDATED:-}" ]] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "no apt-get: install $* by hand" >&2
    return 1
  fi
}

for peer in "${want[@]}"; do
  case "$peer" in
    nats)
      if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
        echo "nats: a server already answers on 127.0.0.1:4222 (it needs JetStream: -js)"
      else
        command -v nats-server >/dev/null || apt_install nats-server
        dir="${NATS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatsync-nats}"
        mkdir -p "$dir"
        nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
        echo $! >"$dir/nats.pid"
        echo "nats: started with JetStream (store $dir, pid $(cat "$dir/nats.pid"))"
      fi
      ;;
    redis)
      command -v redis-server >/dev/null || apt_install redis-server
      echo "redis: $(redis-server --version | cut -d' ' -f1-3) (the bench runs its own with appendfsync always)"
      ;;
    synapse)
      ./synapse.sh
      ;;
    *)
      echo "unknown peer $peer (nats, redis, synapse)" >&2
      exit 2
      ;;
  esac
done
