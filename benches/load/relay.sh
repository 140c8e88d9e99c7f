#!/usr/bin/env bash
# Relay benchmark: messages per second through mailbagd's relay queue to a sink SMTP
# server, against the baseline of sending the same messages straight to the sink, in
# the same run (the `relay-bench` binary; everything in one process, on 127.0.0.1).
#
# usage: benches/load/relay.sh          (from the workspace root)
# env:   RUNS=3  N=500 (messages per run)  SIZE=10240 (octets)  CONC=4 (connections)
#
# Baseline: the outbound transport (smtp-proto's ClientSession over tokio) sends N
# messages to the sink, one connection per message, CONC at a time.
# Relay: the same client submits them to mailbagd (port-25 role, client authorized by
# POP-before-SMTP), which answers 250 after the queue fsync; the outbound engine
# (relay.concurrency = CONC, smarthost = the sink) delivers them; the clock stops when
# the sink has all N.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
N=${N:-500}
SIZE=${SIZE:-10240}
CONC=${CONC:-4}

echo "== build"
(cd "$ROOT" && cargo build --release -q -p mailbag-load --bin relay-bench)
for r in $(seq 1 "$RUNS"); do
    echo "== run $r"
    timeout 900 "$ROOT/target/release/relay-bench" "$N" "$SIZE" "$CONC" | grep -v '^mailbagd: listening'
done
