"""A kernel TCP server for the virtual-host tests, run inside the test bed's namespace.

    python3 kernel_server.py IP PEERS_FILE

Listens on IP (port printed on stdout), answers each connection: a request ending in a
blank line gets a small HTTP 200 (``Connection: close``); a connection closed without one
(the ``connect`` pattern) just ends.  Every peer address is appended to PEERS_FILE as one
line when its connection ends, so the test counts distinct clients on the server side.
"""

from __future__ import annotations

import selectors
import socket
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], 0))
    listener.listen(4096)
    listener.setblocking(False)
    peers = open(sys.argv[2], "a", buffering=1)  # noqa: SIM115 - lives as long as we do
    print(listener.getsockname()[1], flush=True)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytes] = {}

    def finish(conn: socket.socket, peer: str) -> None:
        selector.unregister(conn)
        buffers.pop(conn, None)
        conn.close()
        peers.write(peer + "\n")

    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                while True:
                    try:
                        conn, address = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    buffers[conn] = b""
                    selector.register(conn, selectors.EVENT_READ, address[0])
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                finish(sock, key.data)
                continue
            buffers[sock] += data
            if b"\r\n\r\n" in buffers[sock]:
                sock.sendall(RESPONSE)
                finish(sock, key.data)


if __name__ == "__main__":
    main()
