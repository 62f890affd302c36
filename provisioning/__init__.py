"""Fleet CA and identities, enrollment bundles, broker config + ACL, revocation.

The CLI (`cctv-provision`, `provisioning.cli`) is a thin layer over this API."""

from provisioning.broker import BrokerFiles, render_acl, write_broker_config
from provisioning.bundle import UnitInfo
from provisioning.clients import ClientIdentity
from provisioning.config import CertStatus, FleetConfig, IssuedCertificate, ValiditySettings
from provisioning.errors import (
    AlreadyExists,
    AlreadyRevoked,
    BrokerConfigError,
    FleetConfigError,
    FleetNotFound,
    InvalidInput,
    ProvisioningError,
    UnknownUnit,
)
from provisioning.fleet import Fleet

__all__ = [
    "AlreadyExists",
    "AlreadyRevoked",
    "BrokerConfigError",
    "BrokerFiles",
    "CertStatus",
    "ClientIdentity",
    "Fleet",
    "FleetConfig",
    "FleetConfigError",
    "FleetNotFound",
    "InvalidInput",
    "IssuedCertificate",
    "ProvisioningError",
    "UnitInfo",
    "UnknownUnit",
    "ValiditySettings",
    "render_acl",
    "write_broker_config",
]
