#!/usr/bin/env bash
# Profile the gateway's order path under `kym bench`: py-spy samples the `kym serve` child
# (`.venv/bin/pip install py-spy`; not a runtime dependency) and the shares of the worker
# thread's samples are printed by where they fall (benchmarks/worker_shares.py).
# usage: benchmarks/profile_order_path.sh OUT_PREFIX [kym bench options...]
set -eu
out=$1; shift
.venv/bin/kym bench --json "$@" > "$out.json" 2> "$out.err" &
bench=$!
serve=""
for _ in $(seq 200); do
  serve=$(pgrep -P $bench -f "gateway.cli serve" | head -1 || true)
  [ -n "$serve" ] && break
  sleep 0.1
done
.venv/bin/py-spy record -p "$serve" -r 200 ${SPY_FLAGS:-} -f raw -t -o "$out.raw" > "$out.py-spy.log" 2>&1 &
spy=$!
wait $bench
sleep 1
kill -INT $spy 2>/dev/null || true
wait $spy || true
tail -1 "$out.json"
.venv/bin/python benchmarks/worker_shares.py "$out.raw"
