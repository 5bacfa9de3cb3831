"""The few protocol pieces the benchmark clients speak themselves: framing, start-up and login.

SCRAM-SHA-256 computes the salted password once per (salt, iterations), so thousands of logins take
seconds, not PBKDF2 minutes.
"""
import base64, hashlib, hmac, os, socket, struct

salted_cache = {}


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    return data


def read_message(sock):
    kind = read_exact(sock, 1)
    length = struct.unpack("!i", read_exact(sock, 4))[0]
    return kind, read_exact(sock, length - 4)


def send(sock, kind, body):
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def scram(sock, mechanisms, password):
    if b"SCRAM-SHA-256" not in mechanisms.split(b"\0"):
        raise RuntimeError(f"no SCRAM-SHA-256 in {mechanisms!r}")
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
    kind, body = read_message(sock)
    if kind != b"R" or struct.unpack("!i", body[:4])[0] != 11:
        raise RuntimeError(f"expected SASLContinue, got {kind!r} {body!r}")
    server_first = body[4:].decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    key = (salt, iterations)
    if key not in salted_cache:
        salted_cache[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted_cache[key], b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    send(sock, b"p", f"{without_proof},p={proof}".encode())


def login(host, port, user, password, database, timeout=30):
    """A logged-in socket, after ReadyForQuery; SCRAM-SHA-256, md5 or trust."""
    sock = socket.create_connection((host, port), timeout=timeout)
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    sock.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
    while True:
        kind, body = read_message(sock)
        if kind == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code == 10:
                scram(sock, body[4:], password)
            elif code == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest()
                send(sock, b"p", b"md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest().encode() + b"\0")
            elif code not in (0, 12):
                raise RuntimeError(f"unsupported authentication request {code}")
        elif kind == b"E":
            raise RuntimeError(f"login refused: {body!r}")
        elif kind == b"Z":
            return sock
