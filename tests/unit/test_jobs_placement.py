"""Placement: what fits, which GPUs a job gets, whom to preempt."""

from __future__ import annotations

from conveyor.compute.machine import Capacity
from conveyor.compute.placement import Ledger, Need
from conveyor.compute.spec import JobSpec

MACHINE = Capacity(cpus=8, gpus={0: "t4", 1: "t4", 2: "t4", 3: "t4"}, memory_mb=32_000)


def test_gpus_are_handed_out_lowest_free_first_and_freed_at_once() -> None:
    ledger = Ledger(MACHINE)
    assert ledger.take("a", 0, Need(1, 2, 0), 1.0) == (0, 1)
    assert ledger.take("b", 0, Need(1, 1, 0), 2.0) == (2,)
    ledger.release("a")
    assert ledger.take("c", 0, Need(1, 3, 0), 3.0) == (0, 1, 3)
    assert not ledger.fits(Need(1, 1, 0))


def test_what_never_fits_is_named() -> None:
    ledger = Ledger(MACHINE)
    assert ledger.never_fits(Need.of(JobSpec(command="x", gpus=3, workers=2))) == (
        "it needs 6 GPUs and the executor has 4"
    )
    assert "cpus" in (ledger.never_fits(Need(9, 0, 0)) or "")
    assert ledger.never_fits(Need(8, 4, 32_000)) is None


def test_victims_are_lowest_priority_newest_first_and_no_more_than_needed() -> None:
    ledger = Ledger(Capacity(cpus=4, memory_mb=1000))
    ledger.take("old-low", 0, Need(2, 0, 0), started=1.0)
    ledger.take("new-low", 0, Need(1, 0, 0), started=2.0)
    ledger.take("mid", 3, Need(1, 0, 0), started=3.0)
    assert ledger.victims(Need(1, 0, 0), priority=5, stopping=set()) == ["new-low"]
    assert ledger.victims(Need(2, 0, 0), priority=5, stopping=set()) == ["old-low"]
    assert ledger.victims(Need(4, 0, 0), priority=5, stopping=set()) == [
        "new-low",
        "old-low",
        "mid",
    ]
    assert ledger.victims(Need(1, 0, 0), priority=0, stopping=set()) is None
    # a job already being stopped counts as gone: nothing more to preempt
    assert ledger.victims(Need(1, 0, 0), priority=5, stopping={"new-low"}) == []
