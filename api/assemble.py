"""The API's context from the settings: the stores it reads, its keys, its ingest pipeline."""

from __future__ import annotations

from pathlib import Path

from api.context import ApiContext
from api.ingest_pipeline import IngestPipeline
from api.keys import KeyStore
from api.portal_tokens import read_secret
from config.clock import Clock
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings
from operators.native_parse import NativeParser, known_tenants
from reports.usage import UsageReports
from sinks.kafka_ingest import IngestProducer


def ingest_parser(settings: Settings) -> NativeParser:
    """The flow's parse rules (the native core's parser), with the flow's limits."""
    meters = load_meter_catalog(settings.catalogs.meters)
    pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
    return NativeParser(
        meters,
        known_tenants(pricing),
        settings.flow.max_event_bytes,
        settings.window.max_future_skew,
    )


def api_context(
    settings: Settings,
    clock: Clock,
    *,
    ingest: bool,
    reports: UsageReports | None = None,
    keys_file: Path | None = None,
) -> ApiContext:
    """The context of an API over ``settings``; ``reports`` reuses open stores (embedded mode).

    Raises ConfigError (a missing keys file names the setting) or IngestUnavailable when
    the producer cannot be created. Stores that are down at start are not an error:
    /readyz names them until they answer.
    """
    path = keys_file or settings.api.keys_file
    if path is None:
        raise ConfigError(
            "api.keys_file: not set; pass --keys-file and create keys with "
            "`meterwax api keys create`"
        )
    keys = KeyStore(path)
    pipeline = None
    if ingest:
        producer = IngestProducer(
            settings.kafka.brokers, settings.kafka.topics[0], settings.kafka.client_config()
        )
        pipeline = IngestPipeline(
            ingest_parser(settings),
            producer,
            settings.api.max_body_bytes,
            settings.api.max_batch_events,
        )
    return ApiContext(
        reports=reports or UsageReports.from_settings(settings, keep_trying=True),
        keys=keys,
        clock=clock,
        flow_window_ms=settings.window.size,
        ingest=pipeline,
        portal_secret=(
            None
            if settings.api.portal_secret_file is None
            else read_secret(settings.api.portal_secret_file, "api.portal_secret_file")
        ),
        portal_frame_ancestors=settings.api.portal_frame_ancestors,
    )
