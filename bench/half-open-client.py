"""Holds COUNT connections to a pooler that never finish start-up, until killed.

Usage: half-open-client.py HOST PORT COUNT
Half send nothing after connecting; half send the first 6 bytes of a startup packet and stop. Prints
"opened N" once all are open, then sleeps.
"""
import resource, socket, struct, sys, time

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 64)), hard))
sockets = []
partial = struct.pack("!ii", 80, 196608)[:6]
for i in range(count):
    sock = socket.create_connection((host, port), timeout=30)
    if i % 2:
        sock.sendall(partial)
    sockets.append(sock)
print(f"opened {len(sockets)}", flush=True)
while True:
    time.sleep(3600)
