"""Ingest: every message from the units validated (`validation`), sequenced per unit
(`sequence`), applied to the live state, faults and callouts (`apply`) and stored in
batches by `Ingest` (`writer`), which acknowledges them to the broker once committed."""

from controller.ingest.writer import Handler, Ingest, Received

__all__ = ["Handler", "Ingest", "Received"]
