# Shared by deploy/up, deploy/down, deploy/status (sourced, bash).
# Every setting can be overridden by the environment; see deploy/README.md.

DEPLOY_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY_DIR=$(realpath -m -- "${NETWAIT_DEPLOY_DIR:-${TMPDIR:-/tmp}/netwait-deploy}")
DEPLOY_CACHE=$(realpath -m -- "${NETWAIT_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/netwait-deploy}")
KAFKA_PORT=${NETWAIT_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${NETWAIT_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${NETWAIT_KAFKA_HEAP:-512m}
CH_HTTP_PORT=${NETWAIT_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP_PORT=${NETWAIT_CLICKHOUSE_TCP_PORT:-19000}
START_TIMEOUT=${NETWAIT_DEPLOY_START_TIMEOUT:-120}
STOP_TIMEOUT=${NETWAIT_DEPLOY_STOP_TIMEOUT:-30}
PROBE=("${NETWAIT_DEPLOY_PYTHON:-python3}" "$DEPLOY_SRC/lib/probe.py")

SERVICES=(kafka clickhouse)

log() { printf 'deploy: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# The services named on the command line (default: all), checked.
pick_services() {
	if (($# == 0)); then
		printf '%s\n' "${SERVICES[@]}"
		return
	fi
	local s
	for s in "$@"; do
		case $s in
		kafka | clickhouse) echo "$s" ;;
		*) die "unknown service '$s' (kafka, clickhouse)" ;;
		esac
	done
}

# One deploy/up, down or status at a time per data directory (tests call up in parallel).
# fd 9 holds the lock; servers are started with 9>&- so that they do not inherit it.
take_lock() {
	mkdir -p "$DEPLOY_DIR"
	exec 9>"$DEPLOY_DIR/.lock"
	flock -w "$((START_TIMEOUT + STOP_TIMEOUT + 600))" 9 || die "could not lock $DEPLOY_DIR/.lock"
}

# The pid of our running server $1, or status 1. A pid counts only while its command line
# names our data directory (a pid reused by another process is not ours) and it is no zombie.
running_pid() {
	local f="$DEPLOY_DIR/$1/pid" pid state cmdline
	[[ -s $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$DEPLOY_DIR/$1/"* ]] || return 1
	echo "$pid"
}

# Where a started server listens (written when it was started).
address_of() {
	cat "$DEPLOY_DIR/$1/address"
}

export_line() {
	case $1 in
	kafka) echo "export NETWAIT_KAFKA=$(address_of kafka)" ;;
	clickhouse) echo "export NETWAIT_CLICKHOUSE_URL=$(address_of clickhouse)" ;;
	esac
}

probe() {
	"${PROBE[@]}" "$1" "$(address_of "$1")" "${@:2}"
}

log_file_of() {
	case $1 in
	kafka) echo "$DEPLOY_DIR/kafka/log/server.log" ;;
	clickhouse) echo "$DEPLOY_DIR/clickhouse/log/clickhouse-server.log" ;;
	esac
}

# The last lines of a server's logs, on stderr (for failures: CI shows them).
show_log_tail() {
	local f
	for f in "$DEPLOY_DIR/$1/log/stdout.log" "$(log_file_of "$1")" "$DEPLOY_DIR/$1/log/clickhouse-server.err.log"; do
		[[ -s $f ]] || continue
		log "---- last 40 lines of $f"
		tail -n 40 "$f" >&2
	done
}

# Waits until a non-child process is gone (true) or $2 seconds pass (false).
wait_gone() {
	local pid=$1 deadline=$((SECONDS + $2)) state
	while ((SECONDS < deadline)); do
		state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 0
		[[ $state == Z || $state == X ]] && return 0
		sleep 0.2
	done
	return 1
}
