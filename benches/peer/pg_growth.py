#!/usr/bin/env python3
"""The Postgres peer of the growth bench: the table, indexes, rows and transactions of
../shared/bench/pg_events_concurrent.py (unique uuid event id, (stream, position) index,
~330-byte payloads, C clients x transactions of B rows by binary COPY, synchronous_commit=on),
measured twice in one run: over the rows loaded from FIRST - MEASURE to FIRST, and again over the
last MEASURE rows once the table holds TOTAL. Rows between are loaded the same way, unmeasured.
Prints rows/s at each point and their ratio, and the CPU time per row of the Postgres server's
processes (all of this machine's processes named `postgres`) and of this client.
usage: pg_growth.py DSN FIRST TOTAL MEASURE B C"""
import os, sys, struct, time, threading, random, uuid
import psycopg

dsn = sys.argv[1]
FIRST, TOTAL, MEASURE, B, C = (int(a) for a in sys.argv[2:7])
HDR = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)


def buffer(rng):
    parts = [HDR]
    for _ in range(B):
        eid = uuid.UUID(int=rng.getrandbits(128)).bytes
        stream = b"message-%032x" % rng.getrandbits(128)
        typ = b"delivered"
        data = rng.randbytes(330)
        parts.append(struct.pack("!hi", 4, 16) + eid + struct.pack("!i", len(stream)) + stream
                     + struct.pack("!i", len(typ)) + typ + struct.pack("!i", len(data)) + data)
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


with psycopg.connect(dsn, autocommit=True) as c:
    c.execute("DROP TABLE IF EXISTS events")
    c.execute("CREATE TABLE events (position bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, "
              "stream text NOT NULL, type text NOT NULL, data bytea NOT NULL)")
    c.execute("CREATE INDEX events_stream ON events (stream, position)")
    c.execute("CHECKPOINT")

seed = [0]
TICK = os.sysconf("SC_CLK_TCK")


def server_cpu():
    """CPU seconds, user and system, of every process named postgres."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name == "postgres":
            f = stat[stat.rindex(")") + 2:].split()
            total += int(f[11]) + int(f[12])
    return total / TICK


def client_cpu():
    t = os.times()
    return t.user + t.system


def load(rows, pregenerate):
    """Loads `rows` rows with C clients; returns rows/s. Measured loads generate their
    buffers before the clock starts, as the harness does."""
    per = rows // C // B
    seed[0] += 1

    def bufs(i):
        rng = random.Random(seed[0] * 1000 + i)
        return [buffer(rng) for _ in range(per)] if pregenerate else (buffer(rng) for _ in range(per))

    made = [bufs(i) for i in range(C)]

    # Connected before the clock starts, and closed after the CPU is read: a server process
    # takes its CPU time with it when it ends.
    conns = [psycopg.connect(dsn) for _ in range(C)]

    def work(i):
        c = conns[i]
        for b in made[i]:
            with c.cursor() as cur:
                with cur.copy("COPY events (event_id, stream, type, data) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.write(b)
            c.commit()

    cpu = (server_cpu(), client_cpu())
    t = time.perf_counter()
    th = [threading.Thread(target=work, args=(i,)) for i in range(C)]
    [x.start() for x in th]
    [x.join() for x in th]
    spent = time.perf_counter() - t
    n = per * C * B
    load.cpu = ((server_cpu() - cpu[0]) * 1e6 / n, (client_cpu() - cpu[1]) * 1e6 / n)
    for c in conns:
        c.close()
    return n / spent


def fill(to, at):
    while at < to:
        step = min(1_000_000, to - at)
        load(step, False)
        at += step
        print(f"pg: filled {at / 1e6:.1f} M rows", file=sys.stderr, flush=True)
    return at


at = fill(FIRST - MEASURE, 0)
first = load(MEASURE, True)
at += MEASURE
print(f"postgres: {MEASURE} rows with {at / 1e6:.1f} M in the table: {first:,.0f} rows/s; "
      f"cpu µs/row: server {load.cpu[0]:.1f}, client {load.cpu[1]:.1f}", flush=True)
at = fill(TOTAL - MEASURE, at)
last = load(MEASURE, True)
at += MEASURE
print(f"postgres: {MEASURE} rows with {at / 1e6:.1f} M in the table: {last:,.0f} rows/s; "
      f"cpu µs/row: server {load.cpu[0]:.1f}, client {load.cpu[1]:.1f}")
print(f"postgres: ratio {last / first:.2f} ({C} clients x transactions of {B}, unique event_id + (stream, position) index)")
