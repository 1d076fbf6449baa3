"""The API served from a ``meterwax run`` process (``--api-port``): the run holds chDB, so
reads go through the same in-process engine; events go to the topic the run reads."""

from __future__ import annotations

from api.app import build_app
from api.assemble import api_context
from api.context import ApiContext
from api.serve import ApiThread, bind
from config.clock import Clock
from config.errors import ConfigError
from config.settings import Settings
from sinks.kafka_ingest import IngestUnavailable


class EmbeddedApi:
    """The API in a thread of the run; ``url`` once started."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        port = settings.api.port
        assert port is not None
        try:
            self._context: ApiContext = api_context(
                settings, clock, ingest=settings.input.kind == "kafka"
            )
        except IngestUnavailable as exc:
            raise ConfigError(f"api.port: cannot serve the API: {exc}") from None
        try:
            sock = bind(settings.api.host, port)
        except OSError as exc:
            self._close()
            raise ConfigError(
                f"api.port: cannot listen on {settings.api.host}:{port} ({exc.strerror}); "
                "pick a free port"
            ) from None
        self._thread = ApiThread(build_app(self._context), sock)
        self.url = self._thread.url

    def start(self) -> None:
        """Serve until ``stop``."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the requests in flight, then close the producer and the stores."""
        self._thread.stop()
        self._close()

    def _close(self) -> None:
        if self._context.ingest is not None:
            self._context.ingest.producer.close()
        self._context.reports.close()
