"""The roles a user can have: the single definition every route, page and workflow uses."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    MANAGER = "manager"
    OPERATOR = "operator"
    DATA_CONTROLLER = "data_controller"
    CONTRACTOR = "contractor"
    AUDITOR = "auditor"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")
