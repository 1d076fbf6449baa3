"""Serve the application with uvicorn: in the foreground (``meterwax api serve``) or in a
thread beside a running flow (``meterwax run --api-port``)."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 30.0


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    # access_log off: api.app logs each request without its query string.
    return uvicorn.Config(
        app, host=host, port=port, access_log=False, log_config=None, lifespan="off"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port); OSError when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ApiThread:
    """uvicorn serving ``app`` on ``sock`` in a daemon thread, until ``stop``."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._sock = sock
        self._server = uvicorn.Server(_config(app, host, port))
        self._thread = threading.Thread(target=self._run, name="meterwax-api", daemon=True)

    def start(self) -> None:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < _STARTUP_TIMEOUT_S:
            self._thread.join(0.02)
            waited += 0.02

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the requests in flight and stop."""
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def _run(self) -> None:
        # uvicorn leaves signals alone outside the main thread: the flow keeps its handlers.
        self._server.run(sockets=[self._sock])


def serve_forever(app: Starlette, sock: socket.socket) -> None:
    """Serve in the foreground until SIGINT or SIGTERM (uvicorn's own handlers)."""
    host, port = sock.getsockname()[:2]
    uvicorn.Server(_config(app, host, port)).run(sockets=[sock])
