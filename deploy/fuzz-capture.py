#!/usr/bin/env python3
"""Captures real client traffic into the fuzz targets' seed corpus (deploy/fuzz.sh capture).

A loopback relay sits between real clients (psql, pgbench in all three protocol modes, psycopg with
its auto-prepare) and the local test primary, records both directions of every connection, and cuts
them into one corpus per target under Tests/SwitchyardFuzzTargetsTests/Corpus. Run against the
cluster of deploy/cluster.sh; only 127.0.0.1 is used.
"""
import os
import socket
import struct
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Tests", "SwitchyardFuzzTargetsTests", "Corpus")
PRIMARY_PORT = int(os.environ.get("SWITCHYARD_TEST_PG_PORT", "15432"))
HOST = "127.0.0.1"
# Seeds are cut to this: libFuzzer mutates small inputs best, and the repository stays small.
LIMIT = 8192

connections = []  # (client bytes, server bytes) per connection
lock = threading.Lock()


def pump(source, sink, record):
    while True:
        try:
            data = source.recv(65536)
        except OSError:
            data = b""
        if not data:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        record.extend(data)
        sink.sendall(data)


def serve(listener):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        server = socket.create_connection((HOST, PRIMARY_PORT))
        sent, received = bytearray(), bytearray()
        with lock:
            connections.append((sent, received))
        for args in ((client, server, sent), (server, client, received)):
            threading.Thread(target=pump, args=args, daemon=True).start()


def run(command, env):
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def drive(port):
    env = dict(os.environ, PGPASSWORD="app-secret", PGSSLMODE="prefer", PGCONNECT_TIMEOUT="10")
    conninfo = f"host={HOST} port={port} user=app dbname=bench"
    run(["psql", "-X", "-d", conninfo, "-c", "select 1 as one, 'two'::text, now()",
         "-c", "begin; create temp table t(a int); insert into t values (1),(2); select * from t; commit",
         "-c", "/* switchyard: primary */ select count(*) from pg_class where relname like 'pg%'",
         "-c", "set search_path = public; show search_path",
         "-c", "copy (select generate_series(1, 3)) to stdout"], env)
    run(["pgbench", "-i", "-q", "-s", "1", "-d", conninfo], env)
    for mode in ("simple", "extended", "prepared"):
        run(["pgbench", "-n", "-t", "4", "-c", "1", "-M", mode, "-d", conninfo], env)
        run(["pgbench", "-n", "-S", "-t", "4", "-c", "1", "-M", mode, "-d", conninfo], env)
    script = f"""
import psycopg
with psycopg.connect({conninfo!r}, prepare_threshold=1) as conn:
    for i in range(3):
        conn.execute("select %s::int + 1, %s::text", (i, "x")).fetchall()
    with conn.transaction():
        conn.execute("insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, %s, now())", (i,))
    conn.execute("listen fuzz_channel")
    cur = conn.cursor(name="named_cursor")
    with conn.transaction():
        cur.execute("select generate_series(1, 10)")
        cur.fetchmany(3)
"""
    run([os.environ.get("SWITCHYARD_TEST_PYTHON", "/usr/bin/python3"), "-c", script], env)


def messages(data):
    """Typed messages of a stream: (id, body) until the bytes run out."""
    offset = 0
    while offset + 5 <= len(data):
        mid = data[offset]
        (length,) = struct.unpack("!i", data[offset + 1:offset + 5])
        if length < 4 or offset + 1 + length > len(data):
            return
        yield mid, bytes(data[offset + 5:offset + 1 + length])
        offset += 1 + length


def split_startup(sent, received):
    """Start-up packets the client sent, the rest of its stream, and the server's typed stream."""
    packets, offset, server = [], 0, bytes(received)
    while offset + 8 <= len(sent):
        (length, code) = struct.unpack("!ii", sent[offset:offset + 8])
        packets.append(bytes(sent[offset:offset + length]))
        offset += length
        if code == 80877103:  # SSLRequest: the server answered one byte, N
            server = server[1:]
            continue
        break
    return packets, bytes(sent[offset:]), server


def write(target, name, data):
    data = data[:LIMIT]
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def frame(mid, body):
    return bytes([ord(mid)]) + struct.pack("!i", len(body) + 4) + body


def write_console_seeds():
    """What psql (simple protocol) and a driver (extended protocol) send the admin console."""
    simple = ["SHOW HELP", "SHOW SERVERS; SHOW POOLS", "PAUSE primary", "RESUME", "SHOW CLIENTS;",
              "SWITCHOVER TO standby TIMEOUT 2 DRY RUN", "DISABLE replica", "", "RELOAD"]
    for index, text in enumerate(simple):
        write("admin-console", f"seed-simple-{index:02}", bytes([index]) + frame("Q", text.encode() + b"\0") + frame("X", b""))
    for index, (name, text) in enumerate([("", "SHOW STATS"), ("s1", "SHOW VERSION"), ("", "KILL gone")]):
        stmt = name.encode() + b"\0"
        batch = (frame("P", stmt + text.encode() + b"\0" + struct.pack("!h", 0))
                 + frame("B", b"\0" + stmt + struct.pack("!hhh", 0, 0, 1) + struct.pack("!h", 0))
                 + frame("D", b"P\0") + frame("E", b"\0" + struct.pack("!i", 0)) + frame("S", b"")
                 + frame("D", b"S" + stmt) + frame("C", b"S" + stmt) + frame("S", b""))
        write("admin-console", f"seed-extended-{index:02}", bytes([index]) + batch)


def write_configuration_seeds():
    """The example configuration, and the one the deploy kit checks, whole and with a section each."""
    with open(os.path.join(ROOT, "proxy.conf"), "rb") as f:
        example = f.read()
    write("configuration", "seed-proxy.conf", example)
    sections = example.split(b"\n[")
    for index in range(1, len(sections)):
        write("configuration", f"seed-section-{index:02}", sections[0] + b"\n[" + sections[index])


def main():
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    drive(listener.getsockname()[1])
    listener.close()
    statements, scram = set(), []
    for index, (sent, received) in enumerate(connections):
        packets, stream, server = split_startup(sent, received)
        if not stream:
            continue
        write("startup-packet", f"seed-{index:02}", bytes([index]) + b"".join(packets))
        # The first byte also picks the credential store (SCRAM for even ones, md5 for odd).
        write("client-login", f"seed-{index:02}", bytes([index * 2]) + bytes(sent))
        # The first byte seeds how the stream is cut into reads.
        write("client-stream", f"seed-{index:02}", bytes([index]) + stream)
        write("frontend-messages", f"seed-{index:02}", stream)
        write("backend-frames", f"seed-{index:02}", bytes([index]) + server)
        sasl = []
        for mid, body in messages(stream):
            if mid == ord("Q"):
                statements.add(body.rstrip(b"\0"))
            elif mid == ord("P"):
                name_end = body.index(0)
                statements.add(body[name_end + 1:body.index(0, name_end + 1)])
            elif mid == ord("p"):
                sasl.append(body)
        if len(sasl) >= 2:
            mechanism_end = sasl[0].index(0)
            client_first = sasl[0][mechanism_end + 5:]
            scram.append(client_first + b"\0" + sasl[1])
    for index, sql in enumerate(sorted(statements)):
        write("statement-classifier", f"seed-{index:03}", sql)
    for index, exchange in enumerate(scram[:8]):
        write("scram-exchange", f"seed-{index:02}", exchange)
    write_console_seeds()
    write_configuration_seeds()
    print(f"captured {len(connections)} connections, {len(statements)} statements, {len(scram)} SCRAM exchanges", file=sys.stderr)


if __name__ == "__main__":
    main()
