#!/usr/bin/env bash
# Run the A2A TCK (github.com/a2aproject/a2a-tck) against `andon serve` with the agent of
# examples/tck_agent.py, on JSON-RPC and HTTP+JSON (and gRPC for the 1.0 TCK), and print
# a summary.
#
#   scripts/run-tck.sh TCK_DIR [-- extra arguments for the TCK's pytest]
#
# TCK_DIR is a checkout of branch 1.0-dev (A2A 1.0) or 0.3.x (A2A 0.3), with its own
# virtualenv in TCK_DIR/.venv (python3.11 -m venv TCK_DIR/.venv &&
# TCK_DIR/.venv/bin/pip install -e TCK_DIR). The TCK's code is never copied here.
# The server listens on 127.0.0.1 on a free port, with a store in a temporary folder;
# both are gone when this script ends. The TCK writes its reports to TCK_DIR/reports.
#
# For the 1.0 TCK the agent is served in A2A 1.0 only (ANDON_TCK_A2A_VERSIONS=1.0), since
# its card check allows no 0.3 field; set ANDON_TCK_A2A_VERSIONS=1.0,0.3 to run it
# against the default, both versions (see docs/CONFORMANCE.md).
#
# Exit status: 0 when every MUST requirement the TCK tested passed on every transport.
set -euo pipefail

usage() {
    echo "usage: $0 TCK_DIR [-- pytest arguments]" >&2
    exit 2
}
[[ $# -ge 1 ]] || usage
tck=$(cd "$1" && pwd)
shift
if [[ $# -gt 0 ]]; then
    [[ $1 == "--" ]] || usage
    shift
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
andon_bin=$repo/.venv/bin/andon
python=$repo/.venv/bin/python
tck_python=$tck/.venv/bin/python
[[ -x $andon_bin ]] || { echo "no $andon_bin: run make in $repo first" >&2; exit 2; }
[[ -x $tck_python ]] || {
    echo "no $tck_python: python3.11 -m venv $tck/.venv && $tck/.venv/bin/pip install -e $tck" >&2
    exit 2
}
if [[ -d $tck/scenarios ]] && grep -q -- "--sut-host" "$tck/run_tck.py"; then
    branch=1.0
elif grep -q -- "--sut-url" "$tck/run_tck.py" 2>/dev/null; then
    branch=0.3
else
    echo "$tck is neither the 1.0-dev nor the 0.3.x TCK" >&2
    exit 2
fi
if [[ $branch == 1.0 ]]; then
    export ANDON_TCK_A2A_VERSIONS=${ANDON_TCK_A2A_VERSIONS:-1.0}
    # The 1.0 TCK checks the extended card without credentials (see examples/tck_agent.py).
    export ANDON_TCK_EXTENDED_CARD=1
else
    export ANDON_TCK_A2A_VERSIONS=${ANDON_TCK_A2A_VERSIONS:-1.0,0.3}
fi

work=$(mktemp -d)
free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
grpc_port=$(free_port)
url=http://127.0.0.1:$port
server=""
cleanup() {
    if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
        kill "$server"  # SIGTERM: andon drains, then cancels what still runs
        for _ in $(seq 300); do
            kill -0 "$server" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server" 2>/dev/null; then
            echo "andon serve did not stop within 30 s of SIGTERM; killing it" >&2
            kill -KILL "$server"
        fi
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== andon serve examples/tck_agent.py:agent on $url (A2A $ANDON_TCK_A2A_VERSIONS)"
# The TCKs leave many tasks waiting for input (the 0.3 one well over 64, andon's default
# limit of tasks running at once, each holding its slot): room for all of them. The 1.0
# TCK's webhook receiver listens on this machine (http://localhost:PORT/webhook), which
# andon refuses unless allowed.
(cd "$repo" && exec "$andon_bin" serve examples/tck_agent.py:agent --host 127.0.0.1 \
    --port "$port" --db "$work/tck.db" --max-concurrent 1000 --log-level warning \
    --push-allow localhost,127.0.0.1 --grpc-port "$grpc_port") \
    >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "$url/.well-known/agent-card.json" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

cd "$tck"
rm -rf reports
status=0
if [[ $branch == 1.0 ]]; then
    echo "== A2A TCK 1.0-dev ($(git -C "$tck" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    "$tck_python" run_tck.py --sut-host "$url" --transport jsonrpc,http_json,grpc -- "$@" \
        >"$work/tck.log" 2>&1 || true
    tail -n 5 "$work/tck.log"
    "$python" - reports/compatibility.json <<'EOF' || status=1
import json
import sys

report = json.load(open(sys.argv[1]))
results = report["per_requirement"]
transports = ("jsonrpc", "http_json", "grpc", "agent_card")


def outcomes(r):
    """Per transport. The report keeps a transport's last test only: a failed
    requirement that shows no failed transport counts as failed on each it passed."""
    errors = r.get("transport_errors") or {}
    seen = {t: "FAIL" if t in errors else o for t, o in r["transports"].items()}
    if r["status"] == "FAIL" and "FAIL" not in seen.values():
        seen = {t: "FAIL" if o == "PASS" else o for t, o in seen.items()}
    return seen


counts = {}
for rid, r in results.items():
    r["transports"] = outcomes(r)
    for transport, outcome in r["transports"].items():
        if transport in transports:
            key = (r["level"], transport)
            counts.setdefault(key, {"PASS": 0, "FAIL": 0, "SKIPPED": 0})
            counts[key][outcome if outcome in ("PASS", "FAIL") else "SKIPPED"] += 1
print(f"\n{'level':8}{'transport':12}{'pass':>6}{'fail':>6}{'skip':>6}")
for level in ("MUST", "SHOULD", "MAY"):
    for transport in transports:
        c = counts.get((level, transport))
        if c:
            print(f"{level:8}{transport:12}{c['PASS']:6}{c['FAIL']:6}{c['SKIPPED']:6}")
failed = [
    (rid, r)
    for rid, r in results.items()
    if r["status"] == "FAIL" or any(t == "FAIL" for t in r["transports"].values())
]
untested = sorted(rid for rid, r in results.items() if not r["transports"])
print(f"\nnot tested by this TCK run ({len(untested)}): {' '.join(untested)}")
print("\nfailed:" if failed else "\nfailed: none")
for rid, r in failed:
    where = ",".join(t for t, o in r["transports"].items() if o == "FAIL") or "-"
    error = (r["errors"] or [""])[0].splitlines()[0][:160] if r["errors"] else ""
    print(f"  {r['level']:6} {rid:18} {where:22} {error}")
sys.exit(1 if any(r["level"] == "MUST" for _, r in failed) else 0)
EOF
else
    echo "== A2A TCK 0.3.x ($(git -C "$tck" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    "$tck_python" run_tck.py --sut-url "$url" --category all --transports jsonrpc,rest \
        --compliance-report compliance.json >"$work/tck.log" 2>&1 || true
    "$python" - reports <<'EOF' || status=1
import json
import sys
from pathlib import Path

reports = Path(sys.argv[1])
# The 0.3 TCK's categories: mandatory (MUST), capabilities (MUST for what the card
# declares), transport-equivalence (MUST for a card with several transports), quality
# and features (optional).
categories = ("mandatory", "capabilities", "transport-equivalence", "quality", "features")
required = {"mandatory", "capabilities", "transport-equivalence"}
print(f"\n{'category':23}{'transport':11}{'pass':>6}{'fail':>6}{'skip':>6}{'xfail':>7}{'xpass':>7}")
failures = []
for category in categories:
    for path in sorted(reports.glob(f"{category}_*results.json")):
        # One report per transport; transport-equivalence has one across both.
        transport = path.stem.removeprefix(f"{category}_").removesuffix("results").strip("_")
        transport = transport or "both"
        summary = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "xpassed": 0}
        for test in json.loads(path.read_text())["tests"]:
            outcome = "failed" if test["outcome"] == "error" else test["outcome"]
            summary[outcome] = summary.get(outcome, 0) + 1
            if outcome == "failed":
                failures.append((category, transport, test))
        print(
            f"{category:23}{transport:11}{summary['passed']:6}{summary['failed']:6}"
            f"{summary['skipped']:6}{summary['xfailed']:7}{summary['xpassed']:7}"
        )
print("\nfailed:" if failures else "\nfailed: none")
for category, transport, test in failures:
    phase = test.get("call") or test.get("setup") or {}
    reason = (phase.get("crash") or {}).get("message", "").splitlines()
    print(f"  {category:22} {transport:8} {test['nodeid']}")
    if reason:
        print(f"      {reason[0][:150]}")
sys.exit(1 if any(c in required for c, _, _ in failures) else 0)
EOF
fi
cp "$work/server.log" "$work/tck.log" reports/ 2>/dev/null || true
echo "reports, the TCK's output (tck.log) and the server's (server.log): $tck/reports"
exit $status
