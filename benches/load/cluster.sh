#!/usr/bin/env bash
# Several hosts: one mailbagd vs three behind HAProxy (TCP mode, PROXY v2,
# round robin), the same client in the same run, plus what Redis costs per
# relay check and per POP3 login.
#
# usage: benches/load/cluster.sh          (from the workspace root)
# env:   RUNS=3  N=2000 (SMTP messages per run, 10 KB)  USERS=8  POP_MSGS=250
#        (10 KB messages per user's maildrop)  CHECKS=2000 (relay checks and
#        logins per run)  PEERS=<path to shared/peers>  KEEP=1 (keep the work
#        directory and the hosts' logs)
#
# Every host runs with [cluster] redis (one redis-server) and shares one data
# directory (and its passwd users, here [[users]]); each has its own queue.
# "1 host" and "3 hosts" both go through HAProxy, so the client path is the
# same and the figure is what the extra hosts bring on this machine (2 cores:
# the hosts, HAProxy, Redis and the client all share them).
#  - SMTP: bench-smtp.sh (smtp-source, 8 sessions, 10 KB) to ann@example.test,
#    counted when the files are in ann's Maildir (end to end);
#  - POP3: bench-pop3.sh over USERS users (one session per user at a time, as
#    the maildrop lock requires), every message RETRed;
#  - server CPU per message: user+system time of every mailbagd process
#    (/proc/PID/stat) over the run, divided by the messages;
#  - Redis cost: one host, directly (no HAProxy), memory table vs Redis:
#    CHECKS relay checks (RCPT to a remote address from an authorized client,
#    RSET between) and CHECKS POP3 logins (USER, PASS, QUIT) from one client;
#    the difference of the mean latencies is what Redis adds to each.
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" && pwd)}
RUNS=${RUNS:-3}
N=${N:-2000}
USERS=${USERS:-8}
POP_MSGS=${POP_MSGS:-250}
CHECKS=${CHECKS:-2000}
for t in redis-server haproxy python3 bc; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

W=$(mktemp -d /tmp/mailbag-cluster.XXXXXX)
export PEERS_STATE_DIR="$W/peers-state"
REDIS=$(free_port)
PIDS=()
BALANCER=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$BALANCER" ] && bash "$PEERS/haproxy-stop.sh" "$BALANCER" >/dev/null 2>&1 || true
    bash "$PEERS/redis-stop.sh" "$REDIS" >/dev/null 2>&1 || true
    if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

echo "== build"
(cd "$ROOT" && cargo build --release -q -p mailbagd --bin mailbagd)
MAILBAGD="$ROOT/target/release/mailbagd"

USER_LIST=$(seq -f 'u%g' 1 "$USERS" | paste -sd, -)
echo "== fill $USERS maildrops ($POP_MSGS x 10 KB each)"
for u in $(seq -f 'u%g' 1 "$USERS"); do
    python3 "$PEERS/fill-maildir.py" "$W/data/$u" "$POP_MSGS" 10240 >/dev/null
done
bash "$PEERS/redis-start.sh" "$REDIS" >/dev/null

# host NAME [redis|memory]: writes NAME.toml and starts it; sets PORTS_<NAME>.
start_host() {
    local name=$1 table=${2:-redis} pop smtp cluster=""
    pop=$(free_port); smtp=$(free_port)
    [ "$table" = redis ] && cluster="[cluster]
redis = \"redis://127.0.0.1:$REDIS/0\""
    {
        cat <<TOML
hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = "$W/data"
[pop3]
listen = ["127.0.0.1:$pop"]
[smtp]
listen = ["127.0.0.1:$smtp"]
submission_listen = []
[web]
listen = []
[relay]
queue_dir = "$W/queue-$name"
[limits]
max_connections = 2000
max_connections_per_ip = 2000
[proxy]
trusted_networks = ["127.0.0.1/32"]
$cluster
[[users]]
name = "ann"
password = "secret"
TOML
        for u in $(seq -f 'u%g' 1 "$USERS"); do
            printf '[[users]]\nname = "%s"\npassword = "secret"\n' "$u"
        done
    } >"$W/$name.toml"
    "$MAILBAGD" --config "$W/$name.toml" --log info >"$W/$name.out" 2>"$W/$name.err" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "listening smtp" "$W/$name.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "listening smtp" "$W/$name.out" || { cat "$W/$name.err" >&2; exit 1; }
    eval "POP_$name=$pop SMTP_$name=$smtp"
}

# CPU ticks (user + system) of every mailbagd started here.
ticks() {
    local sum=0 p
    for p in "${PIDS[@]}"; do
        [ -r "/proc/$p/stat" ] || continue
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$sum"
}
HZ=$(getconf CLK_TCK)
ms_per() { echo "scale=3; $1 * 1000 / $HZ / $2" | bc -l; }

balance() {
    [ -n "$BALANCER" ] && bash "$PEERS/haproxy-stop.sh" "$BALANCER" >/dev/null 2>&1 || true
    BALANCER=$(free_port)
    bash "$PEERS/haproxy-start.sh" "$BALANCER" "$@" >/dev/null
}

declare -A RATE CPU
measure() {  # measure LABEL SMTP_BACKENDS POP_BACKENDS (space-separated host:port lists)
    local label=$1 r t0 t1 out rate
    for r in $(seq "$RUNS"); do
        balance $2
        rm -rf "$W/data/ann"; mkdir -p "$W/data/ann/new" "$W/data/ann/cur" "$W/data/ann/tmp"
        t0=$(ticks)
        (BENCH_MAILDIR="$W/data/ann" TO=ann@example.test N=$N CONC=8 \
            bash "$PEERS/bench-smtp.sh" 127.0.0.1 "$BALANCER" >"$W/smtp.log" 2>&1 || true)
        out=$(grep delivered_per_s "$W/smtp.log" || { tail -3 "$W/smtp.log" >&2; true; })
        t1=$(ticks)
        rate=$(echo "$out" | sed 's/.*delivered_per_s=\([0-9.]*\).*/\1/')
        echo "   $label run $r SMTP: ${rate:-?} delivered/s, $(ms_per $((t1 - t0)) "$N") ms server CPU/msg"
        RATE[$label-smtp]+="${rate:-0} "; CPU[$label-smtp]+="$(ms_per $((t1 - t0)) "$N") "
        balance $3
        t0=$(ticks)
        out=$( (CONC=$USERS SESSIONS=$((USERS * 2)) bash "$PEERS/bench-pop3.sh" 127.0.0.1 "$BALANCER" "$USER_LIST" secret 2>&1 || true) | tail -1)
        t1=$(ticks)
        rate=$(echo "$out" | sed 's/.*=//')
        local msgs=$((USERS * 2 * POP_MSGS))
        echo "   $label run $r POP3: ${rate:-?} RETR/s, $(ms_per $((t1 - t0)) "$msgs") ms server CPU/RETR"
        RATE[$label-pop]+="${rate:-0} "; CPU[$label-pop]+="$(ms_per $((t1 - t0)) "$msgs") "
    done
}

echo "== start 3 hosts (one data dir, Redis)"
start_host a; start_host b; start_host c
echo "== 1 host behind HAProxy"
measure one "127.0.0.1:$SMTP_a" "127.0.0.1:$POP_a"
echo "== 3 hosts behind HAProxy"
measure three "127.0.0.1:$SMTP_a 127.0.0.1:$SMTP_b 127.0.0.1:$SMTP_c" \
    "127.0.0.1:$POP_a 127.0.0.1:$POP_b 127.0.0.1:$POP_c"
bash "$PEERS/haproxy-stop.sh" "$BALANCER" >/dev/null 2>&1 || true; BALANCER=

echo "== Redis cost: memory table vs Redis, one host, $CHECKS relay checks and $CHECKS logins"
start_host m memory
latency() {  # latency POP_PORT SMTP_PORT: mean ms per relay check, per login
    python3 - "$1" "$2" "$CHECKS" <<'PY'
import socket, sys, time
pop, smtp, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# From 127.0.0.2: 127.0.0.1 is the balancer's (trusted) address.
def conn(port):
    return socket.create_connection(('127.0.0.1', port), timeout=10, source_address=('127.0.0.2', 0))
def pop_login():
    s = conn(pop)
    f = s.makefile('rb'); f.readline()
    s.sendall(b'USER u1\r\n'); f.readline()
    t = time.perf_counter()
    s.sendall(b'PASS secret\r\n'); r = f.readline()
    dt = time.perf_counter() - t
    assert r.startswith(b'+OK'), r
    s.sendall(b'QUIT\r\n'); f.readline(); s.close()
    return dt
pop_login()  # authorizes 127.0.0.2 for relay
logins = [pop_login() for _ in range(n)]
s = conn(smtp)
f = s.makefile('rb')
def reply():
    while True:
        l = f.readline()
        if l[3:4] != b'-': return l
reply(); s.sendall(b'EHLO bench.example\r\n'); reply()
checks = []
for _ in range(n):
    s.sendall(b'MAIL FROM:<a@example.org>\r\n'); reply()
    t = time.perf_counter()
    s.sendall(b'RCPT TO:<friend@elsewhere.example>\r\n'); r = reply()
    checks.append(time.perf_counter() - t)
    assert r.startswith(b'250'), r
    s.sendall(b'RSET\r\n'); reply()
s.sendall(b'QUIT\r\n')
mean = lambda v: sum(v) / len(v) * 1000
print('%.4f %.4f' % (mean(checks), mean(logins)))
PY
}
declare -a DC DL
for r in $(seq "$RUNS"); do
    read -r mc ml < <(latency "$POP_m" "$SMTP_m")
    read -r rc rl < <(latency "$POP_a" "$SMTP_a")
    echo "   run $r: relay check memory $mc ms, Redis $rc ms; POP3 login memory $ml ms, Redis $rl ms"
    DC+=("$(echo "$rc - $mc" | bc -l)"); DL+=("$(echo "$rl - $ml" | bc -l)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "== results (medians of $RUNS runs; $(nproc)-core machine, load average $(cut -d' ' -f1-3 /proc/loadavg))"
for k in smtp pop; do
    one=$(median ${RATE[one-$k]}); three=$(median ${RATE[three-$k]})
    printf '%-5s 1 host %8s/s  %s ms CPU/msg   3 hosts %8s/s  %s ms CPU/msg   ratio %.2f\n' \
        "$k" "$one" "$(median ${CPU[one-$k]})" "$three" "$(median ${CPU[three-$k]})" \
        "$(echo "$three / ($one + 0.000001)" | bc -l)"
done
printf 'Redis adds %.3f ms per relay check and %.3f ms per POP3 login (medians of the mean differences)\n' \
    "$(median "${DC[@]}")" "$(median "${DL[@]}")"
