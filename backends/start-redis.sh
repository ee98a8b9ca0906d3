#!/bin/sh
# Start a local redis-server for lockstep, on loopback, with backends/redis.conf
# (AOF on, no eviction), in the foreground. Stop it with Ctrl-C.
#
#   backends/start-redis.sh                    port 6379, data in ./.lockstep/redis
#   backends/start-redis.sh 6380               another port
#   backends/start-redis.sh 6380 /srv/redis    another data dir
#   backends/start-redis.sh 6380 /srv/redis --daemonize yes --logfile /srv/redis/redis.log
#
# Arguments after the data dir go to redis-server as extra `--option value` settings.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
port=${1:-6379}
data=${2:-./.lockstep/redis}
[ "$#" -gt 0 ] && shift
[ "$#" -gt 0 ] && shift

case "$port" in
    '' | *[!0-9]*) echo "start-redis.sh: the port must be a number, got '$port'" >&2; exit 2 ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "start-redis.sh: the port must be 1-65535, got $port" >&2
    exit 2
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "start-redis.sh: redis-server is not installed (Debian: apt-get install redis-server)" >&2
    exit 3
fi

mkdir -p "$data"
chmod 700 "$data"
data=$(cd "$data" && pwd)

echo "lockstep: redis-server on 127.0.0.1:$port, data in $data (appendonly yes, noeviction)"
echo "lockstep: connect with LOCKSTEP_URL=redis://127.0.0.1:$port/0"
exec redis-server "$here/redis.conf" --port "$port" --dir "$data" "$@"
