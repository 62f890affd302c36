"""Every controller error carries the HTTP status both the JSON API and the pages answer
with, and reads to a person as one sentence (`controller.errors.sentence`)."""

from __future__ import annotations

import importlib
import pkgutil

import controller
from controller.errors import (
    INTERNAL_ERROR,
    ControllerError,
    LinkError,
    NotOnContract,
    StoreError,
    UnknownCallout,
    sentence,
)


def _every_error_class() -> list[type[ControllerError]]:
    for module in pkgutil.walk_packages(controller.__path__, "controller."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    found: list[type[ControllerError]] = []
    todo: list[type[ControllerError]] = [ControllerError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_each_error_class_states_its_own_http_status() -> None:
    classes = _every_error_class()
    assert len(classes) > 20  # the packages' own errors are found too
    for cls in classes:
        assert "status" in vars(cls), f"{cls.__module__}.{cls.__name__} states no status"
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls


def test_a_refusal_reads_as_its_message_and_a_failure_gives_nothing_away() -> None:
    assert sentence(UnknownCallout(7)) == "No callout #7."
    assert sentence(NotOnContract("cam-01", "Acme")) == "Unit cam-01 is not on the Acme contract."
    assert sentence(LinkError("down")) == "Broker link: down."  # 503: worth saying
    secret = StoreError("postgresql://app:hunter2@db/cctv", "cannot connect")
    assert sentence(secret) == INTERNAL_ERROR
    assert sentence(ValueError("a path /etc/cctv/key")) == INTERNAL_ERROR
    assert sentence("is it done?") == "Is it done?"
    assert sentence("  ") == "The request cannot be carried out."
