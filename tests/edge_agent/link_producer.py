"""A unit process for the link's integration tests: a `UnitLink` that enqueues one event
every 1/rate seconds. It prints one line per fact, flushed, so a test can read them even
after `kill -9`:

    boot <boot_id>
    seq <n>          an event is durably in the outbox under seq n
    up               the link is connected (each time)
    closed           SIGTERM handled: outbox flushed, offline state published

Usage: python -m tests.edge_agent.link_producer UNIT_ID SETTINGS_JSON OUTBOX_PATH RATE
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from edge_agent.link import LinkSettings, Outbox, UnitLink
from protocol.messages import Event, RecordingStarted, utcnow


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(unit_id: str, settings: LinkSettings, outbox_path: Path, rate: float) -> int:
    outbox = Outbox.open(outbox_path)
    link = UnitLink(settings, outbox, unit_id=unit_id)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    say(f"boot {link.boot_id}")

    def event(seq: int) -> Event:
        return Event(
            unit_id=unit_id,
            seq=seq,
            sent_at=utcnow(),
            boot_id=link.boot_id,
            at=utcnow(),
            event=RecordingStarted(),
        )

    async def produce() -> None:
        while True:
            message = await link.publish(event)
            say(f"seq {message.seq}")
            await asyncio.sleep(1.0 / rate)

    async def report_up() -> None:
        while True:
            await link.connected.wait()
            say("up")
            while link.connected.is_set():  # noqa: ASYNC110 (the link has no "down" event)
                await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(link.run(), name="link")
        producer = tg.create_task(produce(), name="producer")
        reporter = tg.create_task(report_up(), name="report-up")
        await stop.wait()
        producer.cancel()
        reporter.cancel()
        await link.close("shutdown")
    outbox.close()
    say("closed")
    return 0


if __name__ == "__main__":
    unit, raw, path, rate = sys.argv[1:5]
    settings = LinkSettings.model_validate_json(raw)
    sys.exit(asyncio.run(main(unit, settings, Path(path), float(rate))))
