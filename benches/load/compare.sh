#!/usr/bin/env bash
# Load benchmark: mailbagd side by side with Postfix (SMTP delivery) and Dovecot
# (POP3 retrieval) on this machine, in the same run, with one client for all of
# them (`loadgen`, tokio, this package), plus mailbagd's resident memory per idle
# connection with IDLE idle connections (half POP3, half SMTP) and the time a
# POP3 login takes meanwhile.
#
# usage: benches/load/compare.sh          (from the workspace root)
# env:   RUNS=3  N=1000 (SMTP messages per run, SIZE octets each, SMTP_SESSIONS at once)
#        SIZE=10240  SMTP_SESSIONS=4  USERS=4  POP_MSGS=1000 (messages per user, 10 KB)
#        SESSIONS=8 (POP3 sessions per user per run: 32,000 RETRs, enough server CPU
#        ticks for a CPU figure within ~2 %; 2 gave ~20 ticks, ±5 %)  PIPELINE=1 (RETRs in flight)
#        IDLE=2000  PEERS=<path to shared/peers>
#        QUOTA=<size>: mailbagd's [limits] user_quota (e.g. 1G: every local RCPT
#        and delivery then counts the user's mail; unset: no quota, as Postfix here)
#        LIMITS=explicit: mailbagd's [limits] max_connections is IDLE + 100 over
#        all listeners; LIMITS=default: mailbagd runs on its default connection
#        limits (5,000 POP3 + 5,000 SMTP + ...), lowered to fit the hard
#        open-file limit this script runs under (`ulimit -Hn`; 65,536 holds
#        them all), so IDLE / 2 must stay below the lowered POP3 and SMTP limits
#
# SMTP: counted when the file is in the Maildir (Postfix answers 250 when queued
# and delivers later; mailbagd answers 250 after the fsynced delivery), so the
# rate is end to end. POP3: USERS users in parallel, one session per user at a
# time (mailbagd locks a maildrop exclusively, RFC 1939 `[IN-USE]`), every
# message RETRed, no DELE.
# Server CPU per message: user + system time of the server's whole process tree
# over the run (/proc/PID/stat, children that exited included through the
# parents' cutime/cstime): mailbagd's one process, Dovecot's master and its
# children, Postfix's master and its children.
#
# Uses ../shared/peers (dovecot-start.sh, postfix-start.sh, fill-maildir.py).
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" && pwd)}
RUNS=${RUNS:-3}
N=${N:-1000}
SIZE=${SIZE:-10240}
SMTP_SESSIONS=${SMTP_SESSIONS:-4}
USERS=${USERS:-4}
POP_MSGS=${POP_MSGS:-1000}
SESSIONS=${SESSIONS:-8}
PIPELINE=${PIPELINE:-1}
IDLE=${IDLE:-2000}
LIMITS=${LIMITS:-explicit}
QUOTA=${QUOTA:-}
QUOTA_LINE=""
[ -n "$QUOTA" ] && QUOTA_LINE="user_quota = \"$QUOTA\""
case "$LIMITS" in
    explicit) MAX_CONNECTIONS_LINE="max_connections = $((IDLE + 100))" ;;
    default) MAX_CONNECTIONS_LINE="" ;;
    *) echo "LIMITS must be explicit or default" >&2; exit 2 ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

W=$(mktemp -d /tmp/mailbag-bench.XXXXXX)
chmod 755 "$W"   # the peers deliver and read as the `mail` user
export PEERS_STATE_DIR="$W/peers-state"
DPORT=$(free_port); PPORT=$(free_port); MPOP=$(free_port); MSMTP=$(free_port)
MB_PID=
cleanup() {
    [ -n "$MB_PID" ] && kill "$MB_PID" 2>/dev/null || true
    bash "$PEERS/dovecot-stop.sh" "$DPORT" >/dev/null 2>&1 || true
    bash "$PEERS/postfix-stop.sh" "$PPORT" >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

echo "== build"
(cd "$ROOT" && cargo build --release -q -p mailbagd --bin mailbagd && cargo build --release -q -p mailbag-load --bin loadgen)
MAILBAGD="$ROOT/target/release/mailbagd"
LOADGEN="$ROOT/target/release/loadgen"

USER_NAMES=$(seq -f 'u%g' 1 "$USERS")
USER_LIST=$(echo $USER_NAMES | tr ' ' ,)
PEER_USERS="ann:secret $(for u in $USER_NAMES; do printf '%s:secret ' "$u"; done)"
export PEER_USERS
echo "== fill mailboxes ($USERS users x $POP_MSGS x 10 KB, twice)"
for u in $USER_NAMES; do
    python3 "$PEERS/fill-maildir.py" "$W/dovecot/$u" "$POP_MSGS" 10240 >/dev/null
    python3 "$PEERS/fill-maildir.py" "$W/mailbag/$u" "$POP_MSGS" 10240 >/dev/null
done
mkdir -p "$W/postfix"

echo "== start peers and mailbagd"
bash "$PEERS/dovecot-start.sh" "$DPORT" "$W/dovecot" >/dev/null
PEER_POSTFIX_FAST=1 bash "$PEERS/postfix-start.sh" "$PPORT" "$W/postfix" >/dev/null
{
    cat <<TOML
hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = "$W/mailbag"
[pop3]
listen = ["127.0.0.1:$MPOP"]
[smtp]
listen = ["127.0.0.1:$MSMTP"]
submission_listen = []
[web]
listen = []
[limits]
$MAX_CONNECTIONS_LINE
max_connections_per_ip = $((IDLE + 100))
$QUOTA_LINE
[[users]]
name = "ann"
password = "secret"
TOML
    for u in $USER_NAMES; do printf '[[users]]\nname = "%s"\npassword = "secret"\n' "$u"; done
} >"$W/mailbag.toml"
"$MAILBAGD" --config "$W/mailbag.toml" --log warn,mailbagd::fd_limit=info >"$W/mailbagd.out" 2>"$W/mailbagd.err" &
MB_PID=$!
for _ in $(seq 100); do grep -q "listening smtp" "$W/mailbagd.out" 2>/dev/null && break; sleep 0.1; done
DOVECOT_PID=$(cat "$(cat "$PEERS_STATE_DIR/dovecot-$DPORT.dir")/run/master.pid")
POSTFIX_PID=$(head -1 "$(cat "$PEERS_STATE_DIR/postfix-$PPORT.dir")/spool/pid/master.pid" | tr -d ' ')

# CPU ticks of a process and its descendants (exited ones through cutime/cstime).
tree_ticks() {
    local p=$1 sum c
    sum=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
    sum=${sum:-0}
    for c in $(pgrep -P "$p" 2>/dev/null); do sum=$((sum + $(tree_ticks "$c"))); done
    echo "$sum"
}
HZ=$(getconf CLK_TCK)
ms_per() { echo "scale=4; $1 * 1000 / $HZ / $2" | bc -l; }
new_files() { find "$1/new" -maxdepth 1 -type f 2>/dev/null | wc -l; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

# smtp NAME PORT PID MAILDIR: delivered/s and CPU ms per message.
smtp_run() {
    local port=$2 pid=$3 dir=$4 before t0 c0 out want end t1 c1 got
    before=$(new_files "$dir")
    c0=$(tree_ticks "$pid"); t0=$(date +%s.%N)
    out=$("$LOADGEN" smtp "$port" --sessions "$SMTP_SESSIONS" --messages "$N" --size "$SIZE" \
        --to ann@example.test --max-seconds 300 || true)
    want=$((before + $(echo "$out" | field messages | cut -d. -f1))); end=$(( $(date +%s) + 120 ))
    while [ "$(new_files "$dir")" -lt "$want" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.02; done
    t1=$(date +%s.%N); c1=$(tree_ticks "$pid")
    got=$(( $(new_files "$dir") - before ))
    printf '%.0f %s %s %s %s\n' "$(echo "$got / ($t1 - $t0)" | bc -l)" "$(ms_per $((c1 - c0)) "$got")" \
        "$(echo "$out" | field p50_ms)" "$(echo "$out" | field p99_ms)" "$(echo "$out" | field errors)"
}

# pop NAME PORT PID: RETR/s and CPU ms per RETR.
pop_run() {
    local port=$2 pid=$3 c0 c1 out msgs
    c0=$(tree_ticks "$pid")
    out=$("$LOADGEN" pop3 "$port" "$USER_LIST" secret --sessions-per-user "$SESSIONS" \
        --pipeline "$PIPELINE" --max-seconds 300 || true)
    c1=$(tree_ticks "$pid")
    msgs=$(echo "$out" | field messages)
    printf '%s %s %s %s %s\n' "$(echo "$out" | field msgs_per_s)" "$(ms_per $((c1 - c0)) "${msgs%.*}")" \
        "$(echo "$out" | field p50_ms)" "$(echo "$out" | field p99_ms)" "$(echo "$out" | field errors)"
}

declare -a SP SM PD PM CP CM CD CQ
for r in $(seq "$RUNS"); do
    echo "== run $r: SMTP $N x $SIZE octets to ann ($SMTP_SESSIONS sessions), delivered end to end"
    read -r rate cpu p50 p99 err < <(smtp_run postfix "$PPORT" "$POSTFIX_PID" "$W/postfix/ann")
    echo "   postfix : $rate delivered/s, $cpu ms CPU/msg, latency p50 $p50 ms p99 $p99 ms, errors $err"
    SP+=("$rate"); CP+=("$cpu")
    read -r rate cpu p50 p99 err < <(smtp_run mailbagd "$MSMTP" "$MB_PID" "$W/mailbag/ann")
    echo "   mailbagd: $rate delivered/s, $cpu ms CPU/msg, latency p50 $p50 ms p99 $p99 ms, errors $err"
    SM+=("$rate"); CM+=("$cpu")
    echo "== run $r: POP3 $USERS users x $SESSIONS sessions x $POP_MSGS RETRs (pipeline $PIPELINE)"
    read -r rate cpu p50 p99 err < <(pop_run dovecot "$DPORT" "$DOVECOT_PID")
    echo "   dovecot : $rate RETR/s, $cpu ms CPU/RETR, latency p50 $p50 ms p99 $p99 ms, errors $err"
    PD+=("$rate"); CD+=("$cpu")
    read -r rate cpu p50 p99 err < <(pop_run mailbagd "$MPOP" "$MB_PID")
    echo "   mailbagd: $rate RETR/s, $cpu ms CPU/RETR, latency p50 $p50 ms p99 $p99 ms, errors $err"
    PM+=("$rate"); CQ+=("$cpu")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "== idle connections: $IDLE connections to mailbagd, half POP3, half SMTP"
rss() { awk '/VmRSS/ {print $2}' "/proc/$MB_PID/status"; }
before=$(rss)
python3 - "$MPOP" "$IDLE" "$MSMTP" <<'PY' >"$W/idle.out" &
import socket, sys, time
port, n, smtp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    # Half POP3, half SMTP.
    s = socket.create_connection(("127.0.0.1", port if i % 2 == 0 else smtp), timeout=10)
    s.recv(512)                      # the greeting: the connection is served
    socks.append(s)
sys.stdout.write("open\n"); sys.stdout.flush()
time.sleep(2)
# A normal client meanwhile: connect, log in, STAT, QUIT.
t = time.perf_counter()
c = socket.create_connection(("127.0.0.1", port), timeout=10)
f = c.makefile("rb"); f.readline()
for cmd in (b"USER u1", b"PASS secret", b"STAT", b"QUIT"):
    c.sendall(cmd + b"\r\n"); assert f.readline().startswith(b"+OK")
sys.stdout.write("served_ms=%.1f\n" % ((time.perf_counter() - t) * 1000)); sys.stdout.flush()
time.sleep(1)
PY
CLIENT=$!
for _ in $(seq 600); do grep -q '^open' "$W/idle.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
after=$(rss)
wait $CLIENT || { echo "idle client failed:"; cat "$W/idle.out"; }
per=$(( (after - before) * 1024 / IDLE ))

ratio() { echo "$1 / ($2 + 0.0000001)" | bc -l; }
echo
echo "== results (medians of $RUNS runs; $(nproc)-core machine, load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf 'SMTP delivered/s  postfix %s  mailbagd %s  ratio %.2f   CPU ms/msg  postfix %s  mailbagd %s  ratio %.2f\n' \
    "$(median "${SP[@]}")" "$(median "${SM[@]}")" "$(ratio "$(median "${SM[@]}")" "$(median "${SP[@]}")")" \
    "$(median "${CP[@]}")" "$(median "${CM[@]}")" "$(ratio "$(median "${CM[@]}")" "$(median "${CP[@]}")")"
printf 'POP3 RETR/s       dovecot %s  mailbagd %s  ratio %.2f   CPU ms/RETR dovecot %s  mailbagd %s  ratio %.2f\n' \
    "$(median "${PD[@]}")" "$(median "${PM[@]}")" "$(ratio "$(median "${PM[@]}")" "$(median "${PD[@]}")")" \
    "$(median "${CD[@]}")" "$(median "${CQ[@]}")" "$(ratio "$(median "${CQ[@]}")" "$(median "${CD[@]}")")"
echo "mailbagd limits    $LIMITS: $(grep -h -o 'open-file limit.*\|default connection limits.*' "$W/mailbagd.err" | tr '\n' ';' || true)"
echo "mailbagd quota     ${QUOTA:-none}"
echo "idle memory       RSS $before KiB -> $after KiB with $IDLE idle connections = $per bytes/connection;" \
    "a login meanwhile took $(sed -n 's/served_ms=//p' "$W/idle.out") ms"
