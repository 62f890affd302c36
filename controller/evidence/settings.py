"""The controller's `[evidence]` settings.

[evidence]
store_dir = "/var/lib/cctv/evidence"      # retrieved ciphertext and exhibits
sar_reminder_days = 7                     # remind this many days before a SAR is due
reminder_webhooks = ["https://dpo.example/hooks/cctv"]
max_range_hours = 24                      # longest time range one case may ask for
private_key_file = "/etc/cctv/fleet/evidence/evidence-private.json"   # opened per exhibit

[evidence.uploads]                        # the HTTPS endpoint units upload footage to
port = 8443                               # (controller.evidence.upload_settings)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from controller.evidence.upload_settings import UploadSettings

__all__ = ["EvidenceSettings"]


class EvidenceSettings(BaseModel):
    """Where evidence is kept, and the limits and reminders of cases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_dir: Path = Field(
        Path("evidence-store"),
        description="Retrieved footage (still encrypted) and exhibits; made on first use",
    )
    sar_reminder_days: int = Field(
        7, ge=0, le=60, description="Remind this many days before a subject access request is due"
    )
    reminder_webhooks: list[str] = Field(
        default_factory=list, description="Webhook URLs told when a subject access request is near"
    )
    max_range_hours: float = Field(
        24, gt=0, le=24 * 31, description="Longest time range of footage one case range may ask for"
    )
    max_ranges: int = Field(20, ge=1, le=200, description="Most unit and time ranges in one case")
    private_key_file: Path | None = Field(
        None,
        description="The evidence private key (sealed under the data controllers' passphrase), "
        "opened only while an exhibit is made; default <fleet_dir>/evidence/evidence-private.json",
    )
    uploads: UploadSettings = Field(
        default_factory=UploadSettings, description="The HTTPS endpoint units upload footage to"
    )
