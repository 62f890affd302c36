"""The fleet: the inventory (`inventory`), each unit's live state (`state`) and its
roll-up (`rollup`), the periodic jobs (`jobs`), signed commands and their log
(`commands`, `command_log`), the reports units send (`unit_reports`), their signing keys
(`unit_keys`) and their recording index checkpoints (`index_checkpoints`,
`index_views`)."""

from controller.fleet.inventory import ImportResult, import_units, register_unit, retire_unit
from controller.fleet.rollup import (
    FleetOverview,
    RollUp,
    UnitDetail,
    UnitSummary,
    fleet_overview,
    roll_up,
    rollup_counts,
    unit_detail,
)

__all__ = [
    "FleetOverview",
    "ImportResult",
    "RollUp",
    "UnitDetail",
    "UnitSummary",
    "fleet_overview",
    "import_units",
    "register_unit",
    "retire_unit",
    "roll_up",
    "rollup_counts",
    "unit_detail",
]
