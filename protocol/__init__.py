"""The fleet's wire protocol: topics, messages, fault codes, signatures, segment format.

Pure: no network, no disk, no asyncio. Both the edge agent and the controller import it;
it imports neither.
"""

from protocol.errors import (
    MalformedMessage,
    MessageError,
    PayloadTooLarge,
    ProtocolError,
    RefusalReason,
    SegmentError,
    SignatureRefused,
    UnknownKind,
    UnknownTopic,
    VersionMismatch,
)
from protocol.faults import FAULT_INFO, FaultCode, Priority
from protocol.messages import PROTOCOL_VERSION, Message, decode, encode
from protocol.signing import Signer, Verifier
from protocol.topics import Channel, Topics, validate_unit_id

__all__ = [
    "FAULT_INFO",
    "PROTOCOL_VERSION",
    "Channel",
    "FaultCode",
    "MalformedMessage",
    "Message",
    "MessageError",
    "PayloadTooLarge",
    "Priority",
    "ProtocolError",
    "RefusalReason",
    "SegmentError",
    "SignatureRefused",
    "Signer",
    "Topics",
    "UnknownKind",
    "UnknownTopic",
    "Verifier",
    "VersionMismatch",
    "decode",
    "encode",
    "validate_unit_id",
]
