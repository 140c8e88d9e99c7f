#!/usr/bin/env bash
# Load benchmark: mailbagd side by side with Postfix (SMTP delivery) and Dovecot
# (POP3 retrieval) on this machine, in the same run, plus mailbagd's resident
# memory per idle connection with IDLE (default 2000) idle POP3 connections.
#
# usage: benches/load/compare.sh          (from the workspace root)
# env:   RUNS=3  N=2000 (SMTP messages per run)  POP_MSGS=1000 (10 KB each)
#        SESSIONS=10 IDLE=2000  PEERS=<path to shared/peers>
#
# SMTP: bench-smtp.sh (postfix's smtp-source, 4 sessions, 10 KB) to ann@example.test,
# counted when the file is in ann's Maildir (end to end: Postfix answers 250 when
# queued and delivers later; mailbagd answers 250 after the fsynced delivery).
# POP3: bench-pop3.sh with CONC=1: mailbagd locks a maildrop exclusively
# (RFC 1939, `-ERR [IN-USE]`), so sessions of one user run one at a time, for
# both servers alike.
#
# Uses ../shared/peers (dovecot-start.sh, postfix-start.sh, fill-maildir.py,
# bench-smtp.sh, bench-pop3.sh). Everything listens on 127.0.0.1 only and is
# stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" && pwd)}
RUNS=${RUNS:-3}
N=${N:-2000}
POP_MSGS=${POP_MSGS:-1000}
IDLE=${IDLE:-2000}
SESSIONS=${SESSIONS:-10}
ulimit -n 65536 2>/dev/null || ulimit -n 8192

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

W=$(mktemp -d /tmp/mailbag-bench.XXXXXX)
chmod 755 "$W"   # the peers deliver and read as the `mail` user
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
(cd "$ROOT" && cargo build --release -q -p mailbagd --bin mailbagd)
MAILBAGD="$ROOT/target/release/mailbagd"

echo "== fill mailboxes ($POP_MSGS x 10 KB for joe, twice)"
python3 "$PEERS/fill-maildir.py" "$W/dovecot/joe" "$POP_MSGS" 10240 >/dev/null
python3 "$PEERS/fill-maildir.py" "$W/mailbag/joe" "$POP_MSGS" 10240 >/dev/null
mkdir -p "$W/postfix"

echo "== start peers and mailbagd"
bash "$PEERS/dovecot-start.sh" "$DPORT" "$W/dovecot" >/dev/null
PEER_POSTFIX_FAST=1 bash "$PEERS/postfix-start.sh" "$PPORT" "$W/postfix" >/dev/null
cat > "$W/mailbag.toml" <<TOML
hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = "$W/mailbag"
[pop3]
listen = ["127.0.0.1:$MPOP"]
[smtp]
listen = ["127.0.0.1:$MSMTP"]
submission_listen = []
[limits]
max_connections = $((IDLE + 100))
max_connections_per_ip = $((IDLE + 100))
[[users]]
name = "joe"
password = "secret"
[[users]]
name = "ann"
password = "secret"
TOML
"$MAILBAGD" --config "$W/mailbag.toml" --log warn >"$W/mailbagd.out" 2>"$W/mailbagd.err" &
MB_PID=$!
for _ in $(seq 100); do grep -q "listening smtp" "$W/mailbagd.out" 2>/dev/null && break; sleep 0.1; done

last() { tail -1 | sed 's/.*=//'; }
declare -a SP SM PD PM
for r in $(seq "$RUNS"); do
    echo "== run $r: SMTP $N x 10 KB to ann (4 sessions, smtp-source), delivered end to end"
    p=$( (BENCH_MAILDIR="$W/postfix/ann" TO=ann@example.test N=$N CONC=4 bash "$PEERS/bench-smtp.sh" 127.0.0.1 "$PPORT" 2>&1 || true) \
        | grep delivered_per_s | sed 's/.*delivered_per_s=\([0-9]*\).*/\1/')
    m=$( (BENCH_MAILDIR="$W/mailbag/ann" TO=ann@example.test N=$N CONC=4 bash "$PEERS/bench-smtp.sh" 127.0.0.1 "$MSMTP" 2>&1 || true) \
        | grep delivered_per_s | sed 's/.*delivered_per_s=\([0-9]*\).*/\1/')
    echo "   postfix delivered/s: $p    mailbagd delivered/s: $m"
    SP+=("$p"); SM+=("$m")
    echo "== run $r: POP3 retrieval ($SESSIONS sessions x $POP_MSGS msgs, one at a time)"
    d=$( (CONC=1 SESSIONS=$SESSIONS bash "$PEERS/bench-pop3.sh" 127.0.0.1 "$DPORT" joe secret 2>&1 || true) | last)
    m=$( (CONC=1 SESSIONS=$SESSIONS bash "$PEERS/bench-pop3.sh" 127.0.0.1 "$MPOP" joe secret 2>&1 || true) | last)
    echo "   dovecot RETR/s: $d    mailbagd RETR/s: $m"
    PD+=("$d"); PM+=("$m")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "== idle connections: $IDLE POP3 connections to mailbagd"
rss() { awk '/VmRSS/ {print $2}' "/proc/$MB_PID/status"; }
before=$(rss)
python3 - "$MPOP" "$IDLE" <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(512)                      # the greeting: the connection is served
    socks.append(s)
sys.stdout.write("open\n"); sys.stdout.flush()
time.sleep(8)
PY
CLIENT=$!
sleep 6
after=$(rss)
wait $CLIENT || true
per=$(( (after - before) * 1024 / IDLE ))

echo
echo "== results (medians of $RUNS runs; $(nproc)-core machine, client and servers on the same cores)"
printf 'SMTP delivered/s  postfix %s  mailbagd %s  ratio %.2f\n' "$(median "${SP[@]}")" "$(median "${SM[@]}")" \
    "$(echo "$(median "${SM[@]}") / $(median "${SP[@]}")" | bc -l)"
printf 'POP3 RETR/s       dovecot %s  mailbagd %s  ratio %.2f\n' "$(median "${PD[@]}")" "$(median "${PM[@]}")" \
    "$(echo "$(median "${PM[@]}") / $(median "${PD[@]}")" | bc -l)"
echo "idle memory       RSS $before KiB -> $after KiB with $IDLE idle connections = $per bytes/connection"
