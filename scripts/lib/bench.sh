# scripts/lib/bench.sh — helpers shared by the benchmark scripts
# (scripts/bench-e2e, scripts/bench-latency, scripts/bench-memory).
#
# Source it after `set -euo pipefail` with BENCH_NAME set (the prefix of
# log and error lines):
#
#   BENCH_NAME=bench-e2e
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
#
# Sourcing sets root (the module root) and changes into it, and sets clk
# (clock ticks per second); everything else is functions, plus the bg_pids
# array that the exit trap stops. bench_start sets the globals each script
# works with: work, bin, pg_pid, pg_url, kafka_pid, brokers, cfg.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$root"
clk=$(getconf CLK_TCK)

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }

# need CMD...: fail naming the first command that is not installed.
need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || die "$t not found (apt-get install -y kcat postgresql-client time)"
	done
}

# parse_bytes SIZE: 200MB, 1GB, 1.5GB (decimal), 512MiB, 2GiB (binary), or a
# plain number, printed in bytes.
parse_bytes() {
	awk -v s="$1" 'BEGIN {
		if (match(s, /^[0-9.]+/) == 0) exit 1
		n = substr(s, 1, RLENGTH); u = toupper(substr(s, RLENGTH + 1))
		m["" ] = 1; m["B"] = 1
		m["K"] = 1e3; m["KB"] = 1e3; m["M"] = 1e6; m["MB"] = 1e6; m["G"] = 1e9; m["GB"] = 1e9
		m["KIB"] = 1024; m["MIB"] = 1048576; m["GIB"] = 1073741824
		if (!(u in m)) exit 1
		printf "%.0f\n", n * m[u] # %d stops at 2^31-1 in mawk
	}' || die "BENCH_BYTES: cannot parse $1 (want e.g. 200MB, 1GB, 2GiB)"
}

# Background processes to stop on exit (TERM, then wait), newest first.
declare -a bg_pids=()

bench_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	# Newest first: a client stops before the servers it talks to.
	for ((i = ${#bg_pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${bg_pids[i]}" 2>/dev/null || true
		wait "${bg_pids[i]}" 2>/dev/null || true
	done
	if [[ -n "${work:-}" ]]; then
		if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
			log "kept $work"
		else
			rm -rf "$work"
		fi
	fi
	exit "$rc"
}

# bench_workdir: create $work under TMPDIR and install the exit traps (stop
# bg_pids, remove $work unless BENCH_KEEP=1).
bench_workdir() {
	work="$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")"
	chmod 755 "$work" # PostgreSQL runs as "postgres" when we are root
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# wait_line FILE PID: print the first line of FILE once PID wrote it; fail
# when PID exits first or after 2 minutes.
wait_line() {
	local f=$1 pid=$2 i
	for ((i = 0; i < 1200; i++)); do
		if [[ -s "$f" ]] && (($(wc -l <"$f") > 0)); then
			head -n 1 "$f"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# bench_start TABLE [TOPIC [MORE_TOPICS...]]: the work directory, the binary ($bin), a
# throwaway PostgreSQL (`ingest dev postgres`: pg_pid, pg_url) and Kafka
# (`ingest dev kafka`: a real Apache Kafka broker, or librdkafka's mock with
# BENCH_KAFKA=mock; BENCH_BROKERS brokers, TOPIC with BENCH_PARTITIONS
# partitions: kafka_pid, brokers; kafka_desc says which for the reports),
# and a migrated config
# ($cfg) routing TABLE — the raw_item layout `ingest gen` writes — to both
# sinks from spool $work/data, state $work/state. Both dev processes take
# SIGUSR1 (down) and SIGUSR2 (up).
# To measure settings other than the defaults: BENCH_KAFKA_PROPERTIES is a
# YAML map of librdkafka properties (kafka.properties, e.g.
# '{linger.ms: "5"}'), BENCH_CONFIG_EXTRA YAML lines added to the config
# (e.g. 'batch: {linger: 5ms}'; not spool, kafka, db, metrics or tables,
# which the file already has). BENCH_DB_STORAGE is the table's db_storage
# (default '{toast_tuple_target: 8160}': ~2 KB base64 rows stay inline;
# '' = PostgreSQL's defaults); pg_desc says which, for the reports, along
# with BENCH_PG_SETTINGS (extra `ingest dev postgres --set` values).
bench_start() {
	local table=$1 topic=${2:-$1} t
	local topic_flags=(--topic "$topic")
	for t in "${@:3}"; do topic_flags+=(--topic "$t"); done
	bench_workdir
	bin="$work/ingest"
	log "building $bin"
	go build -o "$bin" ./cmd/ingest

	log "starting PostgreSQL (ingest dev postgres)"
	local pg_set=() kv
	for kv in ${BENCH_PG_SETTINGS:-}; do pg_set+=(--set "$kv"); done
	"$bin" dev postgres "${pg_set[@]}" >"$work/pg.out" 2>"$work/pg.log" &
	pg_pid=$!
	bg_pids+=("$pg_pid")
	pg_url=$(wait_line "$work/pg.out" "$pg_pid") || { cat "$work/pg.log" >&2; die "PostgreSQL did not start"; }

	local kflags=()
	case "${BENCH_KAFKA:-real}" in
	real) kafka_desc="Apache Kafka 4.4 broker (KRaft, ${BENCH_BROKERS:-1} node(s), ${BENCH_PARTITIONS:-6} partitions, same host)" ;;
	mock) kflags=(--mock); kafka_desc="librdkafka mock cluster (${BENCH_BROKERS:-1} brokers, ${BENCH_PARTITIONS:-6} partitions; MOCK figures)" ;;
	*) die "BENCH_KAFKA must be real or mock" ;;
	esac
	log "starting Kafka: $kafka_desc (ingest dev kafka)"
	"$bin" dev kafka "${kflags[@]}" --brokers "${BENCH_BROKERS:-1}" "${topic_flags[@]}" --partitions "${BENCH_PARTITIONS:-6}" \
		>"$work/kafka.out" 2>"$work/kafka.log" &
	kafka_pid=$!
	bg_pids+=("$kafka_pid")
	brokers=$(wait_line "$work/kafka.out" "$kafka_pid") || { cat "$work/kafka.log" >&2; die "Kafka did not start"; }
	log "PostgreSQL at $pg_url, Kafka at $brokers"

	db_storage='{toast_tuple_target: 8160}'
	[[ -v BENCH_DB_STORAGE ]] && db_storage=$BENCH_DB_STORAGE
	local storage_desc="db_storage $db_storage"
	[[ -n "$db_storage" ]] || storage_desc="no db_storage (PostgreSQL's defaults)"
	pg_desc="table $table with $storage_desc${BENCH_PG_SETTINGS:+, server settings $BENCH_PG_SETTINGS over the test defaults}"

	mkdir -p "$work/data" "$work/state"
	cfg="$work/ingest.yaml"
	cat >"$cfg" <<EOF
# written by scripts/$BENCH_NAME
spool: {dir: "$work/data", state_dir: "$work/state"}
kafka: {brokers: "$brokers"${BENCH_KAFKA_PROPERTIES:+, properties: $BENCH_KAFKA_PROPERTIES}}
db: {url: "$pg_url"}
metrics: {listen: "127.0.0.1:0"}
${BENCH_CONFIG_EXTRA:-}
tables:
  $table:
    key: project_id
    id: uuid
    time: timestamp
    columns: {project_id: bigint, timestamp: bigint, body: text, version: integer, billable: integer, uuid: uuid}
    db: all
    kafka: all
${db_storage:+    db_storage: $db_storage}
EOF
	"$bin" migrate --config "$cfg" >&2
}

# psql_q ARGS...: psql on $pg_url, quiet, stopping at the first error.
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$pg_url" "$@"; }

# tree_ticks PID: utime+stime (+ reaped children's) of PID and its live
# descendants, in clock ticks.
tree_ticks() {
	local pid=$1 t=0 c
	if [[ -r /proc/$pid/stat ]]; then
		local st
		st=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo 0; return; }
		st=${st##*) }
		read -r -a f <<<"$st"
		t=$((f[11] + f[12] + f[13] + f[14]))
		for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
			t=$((t + $(tree_ticks "$c")))
		done
	fi
	echo "$t"
}

# tree_rss_kb PID: current RSS of PID and its live descendants, in KiB.
tree_rss_kb() {
	local pid=$1 t=0 c r
	r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	t=${r:-0}
	for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
		t=$((t + $(tree_rss_kb "$c")))
	done
	echo "$t"
}

# median_col FILE COL: the median of column COL of FILE.
median_col() {
	awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# machine_desc: cores, CPU model, memory and kernel, on one line.
machine_desc() {
	echo "$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
}

# git_desc: the short commit, and ", dirty tree" when the tree has changes.
git_desc() {
	echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ', dirty tree')"
}

# bench_append REPORT: append REPORT to BENCH_OUT unless it is empty.
bench_append() {
	[[ -n "${BENCH_OUT:-}" ]] || return 0
	if [[ ! -s "$BENCH_OUT" ]]; then
		mkdir -p "$(dirname "$BENCH_OUT")"
		printf '# Benchmarks\n\nResults appended by the scripts/bench-* scripts (see docs/benchmark-log.md header).\n\n' >"$BENCH_OUT"
	fi
	cat "$1" >>"$BENCH_OUT"
	log "appended to $BENCH_OUT"
}
