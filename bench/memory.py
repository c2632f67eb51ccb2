"""Memory of a running clawproxy under many open connections (used by bench/memory.sh).

    python3 bench/memory.py PID PROXY_ADDR PROXY_AUTH URL [CONNS] [HOLD_S]

Three phases against the proxy at PROXY_ADDR (host:port), sampling the resident set size of
process PID (VmRSS from /proc) as it goes:

1. baseline: 200 authenticated reads of URL on one keep-alive connection;
2. idle: CONNS connections each make one read (a 200 with its receipt) and then stay open and
   silent for HOLD_S seconds;
3. slowloris: CONNS connections each send a request line and then one header byte a second,
   never finishing the head, until the proxy cuts them (its header deadline) or HOLD_S plus
   the deadline passes.

Prints one table row per phase (markdown) with RSS before/peak/after, and how many slowloris
connections the proxy cut. Loopback only, bounded in time and count.
"""

import socket
import sys
import time

PAGE = "VmRSS:"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(PAGE):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {PAGE} for pid {pid}")


def read_response(sock):
    """Reads one HTTP/1.1 response with a Content-Length body; returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside the body")
        body += chunk
    return status


def close_all(socks, pid):
    """Closes the connections; returns the RSS a second later."""
    for sock in socks:
        sock.close()
    time.sleep(1)
    return rss_mib(pid)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main():
    pid, addr, auth, url = sys.argv[1:5]
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    hold = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    request = (
        f"GET {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n"
        f"Proxy-Authorization: {auth}\r\n\r\n"
    ).encode()
    rows = []

    # 1. baseline
    start = rss_mib(pid)
    sock = connect(addr)
    for _ in range(200):
        sock.sendall(request)
        assert read_response(sock) == 200
    sock.close()
    warm = rss_mib(pid)
    rows.append(("baseline: 200 reads on one connection", start, warm, warm, "-"))

    # 2. idle: one read each, then silent
    before = rss_mib(pid)
    idle = []
    ok = 0
    for _ in range(conns):
        sock = connect(addr)
        sock.sendall(request)
        ok += read_response(sock) == 200
        idle.append(sock)
    peak = rss_mib(pid)
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        time.sleep(0.5)
        peak = max(peak, rss_mib(pid))
    after = close_all(idle, pid)
    rows.append(
        (f"idle: {conns} open connections after one read each ({ok} x 200)",
         before, peak, after, "-")
    )

    # 3. slowloris: heads that never end
    before = rss_mib(pid)
    slow = []
    line = f"GET {url} HTTP/1.1\r\n".encode()
    for _ in range(conns):
        sock = connect(addr)
        sock.sendall(line)
        sock.setblocking(False)
        slow.append(sock)
    peak = rss_mib(pid)
    cut = 0
    open_ = list(slow)
    deadline = time.monotonic() + hold + 15
    while open_ and time.monotonic() < deadline:
        time.sleep(1)
        still = []
        for sock in open_:
            try:
                sock.recv(65536)  # an answer (408) or the end: the proxy cut it
                cut += 1
                continue
            except BlockingIOError:
                pass
            except OSError:
                cut += 1
                continue
            try:
                sock.send(b"X")
                still.append(sock)
            except OSError:
                cut += 1
        open_ = still
        peak = max(peak, rss_mib(pid))
    after = close_all(slow, pid)
    rows.append(
        (f"slowloris: {conns} heads, one byte a second", before, peak, after,
         f"{cut} of {conns}")
    )

    print("| phase | RSS before MiB | RSS peak MiB | RSS after MiB | cut by the proxy |")
    print("|---|---:|---:|---:|---:|")
    for name, a, b, c, d in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} | {d} |")


if __name__ == "__main__":
    main()
