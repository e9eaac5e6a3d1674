#!/usr/bin/env python3
"""Are deploy/'s servers ready? Real requests, Python standard library only.

    probe.py kafka HOST:PORT [--timeout S]
    probe.py clickhouse http://HOST:PORT [--timeout S]
    probe.py free PORT...

kafka: sends ApiVersions (v0), then Metadata (v4, the oldest version Kafka 4 still
serves, and only if the broker lists it) and checks that the broker names itself on the
port asked and names a controller. clickhouse: `SELECT version()` over HTTP must answer.
Both: exit 0 with one line on stdout (`ready: ...`), else exit 1 with the reason on
stderr. free: exit 0 when nothing accepts connections on 127.0.0.1 at any of the ports,
else exit 1 naming the port in use. deploy/up and deploy/status use it; it is not a
client for anything else.
"""

import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request

API_METADATA = 3
API_VERSIONS = 18


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("short response")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        value = self.data[self.pos : self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return value


def request(sock, api_key, version, correlation, body):
    client = b"netwait-deploy-probe"
    header = struct.pack(">hhih", api_key, version, correlation, len(client)) + client
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    reader = Reader(recv_exact(sock, size))
    if reader.take(">i") != correlation:
        raise ValueError("correlation id mismatch")
    return reader


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def probe(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        r = request(sock, API_VERSIONS, 0, 1, b"")
        error = r.take(">h")
        if error != 0:
            raise ValueError(f"ApiVersions error code {error}")
        versions = {}
        for _ in range(r.take(">i")):
            key, low, high = r.take(">h"), r.take(">h"), r.take(">h")
            versions[key] = (low, high)
        low, high = versions.get(API_METADATA, (1, 0))
        if not low <= 4 <= high:
            raise ValueError(f"broker serves Metadata v{low}..v{high}, not v4")
        # Metadata v4: topics = null (all), allow_auto_topic_creation = false
        r = request(sock, API_METADATA, 4, 2, struct.pack(">ib", -1, 0))
        r.take(">i")  # throttle_time_ms
        brokers = []
        for _ in range(r.take(">i")):
            node, bhost, bport = r.take(">i"), r.string(), r.take(">i")
            r.string()  # rack
            brokers.append((node, bhost, bport))
        cluster = r.string()
        controller = r.take(">i")
    mine = [b for b in brokers if b[2] == port]
    if not mine:
        raise ValueError(f"metadata lists no broker on port {port}: {brokers}")
    if controller < 0:
        raise ValueError("metadata names no controller yet")
    node, bhost, bport = mine[0]
    return f"ready: cluster {cluster}, broker {node} at {bhost}:{bport}, {len(versions)} api keys"


def probe_clickhouse(url, timeout):
    query = urllib.parse.urlencode({"query": "SELECT version()"})
    with urllib.request.urlopen(f"{url.rstrip('/')}/?{query}", timeout=timeout) as reply:
        version = reply.read().decode("utf-8", "replace").strip()
    if not version or not version[0].isdigit():
        raise ValueError(f"unexpected answer to SELECT version(): {version[:200]!r}")
    return f"ready: ClickHouse {version} at {url}"


def port_in_use(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main(argv):
    if len(argv) < 3 or argv[1] not in ("kafka", "clickhouse", "free"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    what, target = argv[1], argv[2]
    if what == "free":
        for port in argv[2:]:
            if port_in_use(int(port)):
                print(f"port {port} on 127.0.0.1 is in use", file=sys.stderr)
                return 1
        return 0
    timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 3.0
    try:
        if what == "kafka":
            host, _, port = target.rpartition(":")
            print(probe(host or "127.0.0.1", int(port), timeout))
        else:
            print(probe_clickhouse(target, timeout))
        return 0
    except (OSError, ValueError, urllib.error.URLError) as e:
        print(f"{what} not ready at {target}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
