"""What the pages need to know about a pydantic model's fields: the type inside `Optional`
and `Annotated`, whether it is a nested model, the date and time types, and the label a
person reads for each field. Used by the forms (`forms`, `form_data`), the PIA view
(`pia_view`) and the error messages that name a field (`templating.fmt_field_path`)."""

from __future__ import annotations

import types
from datetime import date, datetime
from typing import Annotated, Any, TypeGuard, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
)
from pydantic.fields import FieldInfo

__all__ = ["DATES", "DATETIMES", "LABELS", "is_model", "label_for", "unwrap"]

DATETIMES: tuple[Any, ...] = (datetime, AwareDatetime, NaiveDatetime, FutureDatetime, PastDatetime)
DATES: tuple[Any, ...] = (date, PastDate, FutureDate)

#: Labels where the field name alone reads badly.
LABELS = {
    "unit_id": "Unit",
    "location_id": "Location",
    "pia": "Privacy impact assessment",
    "items": "Crime / ASB references",
    "dpo_advice": "Data protection officer's advice",
    "dpo_name": "DPO's name",
    "prior_consultation": "Prior consultation with the ICO",
    "max_fps": "Maximum frame rate (fps)",
    "bitrate_kbps": "Bitrate (kbit/s)",
    "geofence_radius_m": "Geofence radius (m)",
    "lat": "Latitude",
    "lon": "Longitude",
    "retention_days": "Retention (days)",
    "equality": "Equality impact",
}
_ACRONYMS = {"pia": "PIA", "dpo": "DPO", "ico": "ICO", "asb": "ASB", "id": "ID"}


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional / Annotated, whether None is allowed)."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def label_for(name: str, info: FieldInfo | None = None) -> str:
    """A field's label: its title, a known label, or its name in words."""
    if info is not None and info.title:
        return info.title
    if name in LABELS:
        return LABELS[name]
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]
