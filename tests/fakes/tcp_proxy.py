"""A loopback TCP proxy that can cut every connection and refuse new ones, or freeze them (sockets stay open,
nothing passes: a hung peer or a partition that sends no reset): real network faults between the worker and a
server (PostgreSQL here) without stopping the server other tests share."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `restore()`."""
        self._up.clear()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._sockets.clear()
        self._flowing.set()  # frozen pipes wake up, find their sockets closed and end

    def freeze(self) -> None:
        """Keep every connection open but pass nothing either way (new ones are accepted and frozen too) until
        `restore()`: the kernel still acknowledges, so only timeouts above TCP notice."""
        self._flowing.clear()

    def restore(self) -> None:
        self._up.set()
        self._flowing.set()

    def upstream_ports(self) -> set[int]:
        """The local ports of the open connections to the target (what the server sees as client ports)."""
        with self._lock:
            ports = set()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    if sock.getpeername() == self._target:
                        ports.add(sock.getsockname()[1])
            return ports

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)  # an idle connection stays open (only connecting is bounded)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
            self._flowing.wait()  # a frozen link passes no close either
        except OSError:
            pass
        finally:
            # shutdown first: close() alone sends no FIN while the other pipe's thread is blocked in recv() on the
            # same socket, and the peer would wait for an answer forever
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
