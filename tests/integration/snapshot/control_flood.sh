# Idle clients cannot lock the control socket (issue: 64 connections that
# never send filled it and 'quit' failed): with CONTROL_MAX_CLIENTS idle
# connections and more open, a request still gets through, and the VM
# lives and answers.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos

start_vm a --kernel "$TESTOS" --cmdline "count 100000"
python3 - "$TMP/a.sock" >"$TMP/holder.out" 2>&1 <<'PY' &
import socket, sys, time
socks = []
for i in range(80):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    if i % 2:
        s.send(b'{"cmd":"sta')  # a request never finished
    socks.append(s)
print("holding", len(socks), flush=True)
time.sleep(30)
PY
holder=$!
wait_for "$TMP/holder.out" "holding 80" 10 || fail "could not open the idle connections"
ctl a '{"cmd":"status"}'
echo "$REPLY_JSON" | grep -q '"state":"running"' || fail "status: $REPLY_JSON"
pass "a request is served while 80 idle clients are connected"
ctl a '{"cmd":"quit"}'
wait_vm a 0
kill $holder 2>/dev/null
pass "quit works with the control socket full of idle clients"
