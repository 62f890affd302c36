"""The controller's `[evidence.uploads]` settings: the HTTPS endpoint units upload case
footage to, authenticated both ways with fleet certificates.

    [evidence.uploads]
    port = 8443                  # listen here (unset: no endpoint)
    host = "0.0.0.0"
    # with fleet_dir set, these default to the fleet's files:
    # cert_file = FLEET/controller/uploads.crt   key_file = FLEET/controller/uploads.key
    # ca_file   = FLEET/ca/ca.crt                crl_file = FLEET/ca/crl.pem

The port must match the upload URL provisioning wrote into the units' agent.toml
(`cctv-provision evidence-endpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import ConfigError
from protocol.evidence_upload import MAX_CHUNK_BYTES

__all__ = ["UploadEndpointFiles", "UploadSettings"]


@dataclass(frozen=True)
class UploadEndpointFiles:
    """The endpoint's TLS files, every one present."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    crl_file: Path | None


class UploadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int | None = Field(
        None, ge=1, le=65535, description="TLS port of the upload endpoint; unset: no endpoint"
    )
    host: str = Field("127.0.0.1", description="Address the upload endpoint listens on")
    cert_file: Path | None = Field(None, description="Endpoint server certificate (PEM)")
    key_file: Path | None = Field(None, description="Endpoint server key (PEM)")
    ca_file: Path | None = Field(None, description="Fleet CA: unit certificates must chain to it")
    crl_file: Path | None = Field(None, description="Fleet CRL: revoked units are refused")
    max_chunk_bytes: int = Field(
        MAX_CHUNK_BYTES, ge=64 * 1024, le=MAX_CHUNK_BYTES, description="Largest chunk accepted"
    )
    idle_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="A connection silent this long is closed"
    )

    def files(self, fleet_dir: Path | None) -> UploadEndpointFiles:
        """The TLS files, from the settings or else the fleet directory. Raises
        ConfigError naming the setting when one is missing."""
        root = Path(fleet_dir) if fleet_dir is not None else None

        def pick(key: str, value: Path | None, default: tuple[str, ...]) -> Path:
            path = value or (root.joinpath(*default) if root is not None else None)
            if path is None:
                raise ConfigError(f"evidence.uploads.{key}", "not set and no fleet_dir")
            if not path.is_file():
                raise ConfigError(f"evidence.uploads.{key}", f"{path} does not exist")
            return path

        crl = self.crl_file or (root / "ca" / "crl.pem" if root is not None else None)
        if self.crl_file is not None and not self.crl_file.is_file():
            raise ConfigError("evidence.uploads.crl_file", f"{self.crl_file} does not exist")
        return UploadEndpointFiles(
            cert_file=pick("cert_file", self.cert_file, ("controller", "uploads.crt")),
            key_file=pick("key_file", self.key_file, ("controller", "uploads.key")),
            ca_file=pick("ca_file", self.ca_file, ("ca", "ca.crt")),
            crl_file=crl if crl is not None and crl.is_file() else None,
        )
