"""Camera capture: sources chosen by URL, each read in its own thread."""

from edge_agent.capture.base import (
    CaptureError,
    CaptureSource,
    MediaConsumer,
    MediaKind,
    SampledFrame,
    SignalLost,
    SourceEvent,
    SourceState,
    SourceStats,
    StreamInfo,
    UnsupportedSource,
    redact_url,
)
from edge_agent.capture.sources import open_source
from edge_agent.capture.stream import FileSource, NetworkSource
from edge_agent.capture.synthetic import SyntheticFault, SyntheticSource
from edge_agent.capture.v4l2 import V4L2Source

__all__ = [
    "CaptureError",
    "CaptureSource",
    "FileSource",
    "MediaConsumer",
    "MediaKind",
    "NetworkSource",
    "SampledFrame",
    "SignalLost",
    "SourceEvent",
    "SourceState",
    "SourceStats",
    "StreamInfo",
    "SyntheticFault",
    "SyntheticSource",
    "UnsupportedSource",
    "V4L2Source",
    "open_source",
    "redact_url",
]
