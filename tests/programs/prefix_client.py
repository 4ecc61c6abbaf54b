# A client that writes its first request at once after connect (before the
# runtime can know the acceptor attached: that request is the kernel
# prefix), then keeps the connection alive for more requests. Used by
# tests/tests/transport_prefix.rs against a Go net/http server.
#
#   prefix_client.py ADDR CONNECTIONS REQUESTS
#
# Prints one line per answer: connection, request, status, X-Len, body length.
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
conns, reqs = int(sys.argv[2]), int(sys.argv[3])
body = bytes((ord("a") + i % 26) for i in range(600))


def post(s, path, data):
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % (path, len(data)) + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(8192)
        if not d:
            return "closed before the response head"
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ")[1].decode()
    fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}
    if b"content-length" not in fields:
        return "%s without Content-Length: %r" % (status, buf[:80])
    n = int(fields[b"content-length"])
    while len(rest) < n:
        d = s.recv(8192)
        if not d:
            return "%s closed in the body" % status
        rest += d
    ok = rest[:n] == data.upper()
    return "%s %s %d %s" % (status, fields.get(b"x-len", b"-").decode(), n, "echoed" if ok else "WRONG BODY")


for c in range(conns):
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for r in range(reqs):
        print(c, r, post(s, b"/echo", body))
    s.close()
s = socket.create_connection((host, int(port)))
print("quit", post(s, b"/quit", b"")[:3])
s.close()
