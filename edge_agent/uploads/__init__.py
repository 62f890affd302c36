"""Evidence uploads: on a signed `upload_evidence` command the unit sends the case's
encrypted segments, with its signed index manifest, to the controller's evidence endpoint
in its own config, resumably and within a bandwidth cap (`protocol.evidence_upload`).

    jobs        an upload job, kept in the unit's state folder across reboots
    throttle    the token bucket of the bandwidth cap
    transfer    the HTTPS client, authenticated by the unit's certificate
    uploader    prepares jobs from commands and runs them to the end
"""

from edge_agent.uploads.jobs import JobFile, JobStore, UploadJob
from edge_agent.uploads.throttle import TokenBucket
from edge_agent.uploads.transfer import EndpointClient, EndpointError
from edge_agent.uploads.uploader import Uploader

__all__ = [
    "EndpointClient",
    "EndpointError",
    "JobFile",
    "JobStore",
    "TokenBucket",
    "UploadJob",
    "Uploader",
]
