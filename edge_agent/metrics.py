"""The agent's Prometheus endpoint (off unless `metrics_port` is set; loopback only, for a
node exporter or an engineer's laptop on the unit's maintenance port)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

__all__ = ["AgentMetrics"]


class AgentMetrics:
    def __init__(self, unit_id: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"unit": unit_id}
        r = self.registry

        def gauge(name: str, text: str) -> Any:
            return Gauge(name, text, list(labels), registry=r).labels(**labels)

        self.recording = gauge("cctv_agent_recording", "1 while footage is being recorded")
        self.gate_open = gauge("cctv_agent_gate_open", "1 while a deployment is authorised")
        self.outbox_depth = gauge("cctv_agent_outbox_depth", "Messages waiting for the broker")
        self.outbox_dropped = gauge("cctv_agent_outbox_dropped", "Messages dropped since boot")
        self.open_faults = gauge("cctv_agent_open_faults", "Self-test faults open")
        self.storage_free = gauge("cctv_agent_storage_free_bytes", "Free bytes for footage")
        self.segments = gauge("cctv_agent_segments", "Segments kept on the unit")
        self._server: Any = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
