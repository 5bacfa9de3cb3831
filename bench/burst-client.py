"""One client that sends one very large Parse, the way a bulk loader or an ORM batch does.

Usage: burst-client.py HOST PORT USER PASSWORD DATABASE MEGABYTES
Sends Parse (unnamed, "SELECT 1 /* ...MEGABYTES of padding... */"), Bind, Execute and Sync, streaming
the Parse in 1 MB writes so this process never holds it, then reads the answers up to ReadyForQuery.
Prints one line: "ok SECONDS" or "error SQLSTATE SECONDS message".
"""
import os, struct, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgwire import login, read_message, send  # noqa: E402

host, port, user, password, database, megabytes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
chunk = b"x" * (1 << 20)
head, tail = b"SELECT 1 /* ", b" */"
sock = login(host, port, user, password, database, timeout=300)
started = time.monotonic()
text_length = len(head) + megabytes * len(chunk) + len(tail)
# Parse: name "", the text and its NUL, then 0 parameter types.
body_length = 1 + text_length + 1 + 2
sock.sendall(b"P" + struct.pack("!i", body_length + 4) + b"\0" + head)
for _ in range(megabytes):
    sock.sendall(chunk)
sock.sendall(tail + b"\0" + struct.pack("!h", 0))
send(sock, b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
send(sock, b"E", b"\0" + struct.pack("!i", 0))
send(sock, b"S", b"")
error = None
while True:
    kind, body = read_message(sock)
    if kind == b"E" and error is None:
        fields = {part[:1]: part[1:].decode(errors="replace") for part in body.split(b"\0") if part}
        error = (fields.get(b"C", "?????"), fields.get(b"M", ""))
    elif kind == b"Z":
        break
elapsed = time.monotonic() - started
if error:
    print(f"error {error[0]} {elapsed:.2f} {error[1]}")
else:
    print(f"ok {elapsed:.2f}")
send(sock, b"X", b"")
sock.close()
