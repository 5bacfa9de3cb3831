"""Opens N idle, logged-in client connections to a pooler and reports its RSS before and after.

Usage: idle-client.py HOST PORT USER PASSWORD DATABASE COUNT PID [HOLD_SECONDS]
Prints one line: "before_kb after_kb opened", then keeps the connections HOLD_SECONDS (default 0) more. Speaks the protocol itself (startup, SCRAM-SHA-256 with
the salted password computed once, or md5/trust), so 10,000 logins take seconds, not PBKDF2 minutes.
"""
import os, resource, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgwire import login  # noqa: E402

host, port, user, password, database, count, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
hold = float(sys.argv[8]) if len(sys.argv) > 8 else 0
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 64)), hard))


def rss_kb():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


before = rss_kb()
clients = []
try:
    for _ in range(count):
        clients.append(login(host, port, user, password, database))
except Exception as error:  # report how far it got: the caller shows the figure as failed
    print(f"failed after {len(clients)} logins: {error}", file=sys.stderr)
    sys.exit(1)
time.sleep(2)
print(before, rss_kb(), len(clients), flush=True)
time.sleep(hold)
for sock in clients:
    sock.close()
