"""Large reads build their models with the cyclic garbage collector paused
(store/gc_pause.py), and leave it as they found it: on, or off if the program
had switched it off, whatever the threads in between did."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from threadkeep import Actor, Threadkeep
from threadkeep.store import events as events_q
from threadkeep.store import gc_pause
from threadkeep.store import messages as messages_q
from threadkeep.store.gc_pause import MIN_ROWS, gc_paused


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_a_pause_switches_the_collector_off_and_back_on() -> None:
    assert gc.isenabled()
    with gc_paused(MIN_ROWS):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_small_read_leaves_the_collector_alone() -> None:
    with gc_paused(MIN_ROWS - 1):
        assert gc.isenabled()


def test_the_collector_comes_back_on_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError), gc_paused(MIN_ROWS):
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_collector_the_program_switched_off_stays_off() -> None:
    gc.disable()
    with gc_paused(MIN_ROWS):
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_last() -> None:
    """The first thread out must not switch the collector back on under the
    second, and the second must switch it on when it leaves."""
    inside, first_left = threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        with gc_paused(MIN_ROWS):
            inside.set()
            first_left.wait(10)
            seen.append(gc.isenabled())

    t = threading.Thread(target=second)
    with gc_paused(MIN_ROWS):
        t.start()
        assert inside.wait(10)
    first_left.set()
    t.join(10)
    assert seen == [False]
    assert gc.isenabled()


def test_pauses_that_overlap_without_end_let_the_collector_back_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reads in several threads, each starting before the last ended: after
    MAX_OFF_SECONDS the next one turns the collector back on, and it stays
    on until they stop overlapping."""
    now = [100.0]
    monkeypatch.setattr(gc_pause, "_clock", lambda: now[0])
    with gc_paused(MIN_ROWS):
        assert not gc.isenabled()
        now[0] += gc_pause.MAX_OFF_SECONDS / 2
        with gc_paused(MIN_ROWS):  # overlapping, soon: still off
            assert not gc.isenabled()
        now[0] += gc_pause.MAX_OFF_SECONDS
        with gc_paused(MIN_ROWS):  # overlapping, off too long: back on
            assert gc.isenabled()
        assert gc.isenabled()
    assert gc.isenabled()
    with gc_paused(MIN_ROWS):  # the overlap ended: the next pause pauses again
        assert not gc.isenabled()


def _watch(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[bool]:
    """Whether the collector was on each time ``module`` built a model."""
    states: list[bool] = []
    real = module.trusted

    def watching(cls: Any, values: dict[str, Any]) -> Any:
        states.append(gc.isenabled())
        return real(cls, values)

    monkeypatch.setattr(module, "trusted", watching)
    return states


def test_a_long_history_is_built_with_the_collector_paused(
    tk: Threadkeep, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = tk.create_session(actor).value.id
    batch = [{"role": "user", "content": f"m{i}"} for i in range(MIN_ROWS)]
    tk.append_messages(actor, sid, batch)
    states = _watch(monkeypatch, messages_q)

    history = tk.get_history(actor, sid)
    assert [m.content for m in history] == [m["content"] for m in batch]
    assert states == [False] * MIN_ROWS
    assert gc.isenabled()

    states.clear()
    assert len(tk.last_messages(actor, sid, 50)) == 50  # a small read: left alone
    assert states == [True] * 50


def test_long_event_lists_are_built_with_the_collector_paused(
    tk: Threadkeep, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = tk.create_session(actor).value.id
    tk.append(
        actor,
        sid,
        tool_events=[{"name": "grep", "status": "succeeded"} for _ in range(MIN_ROWS)],
        timeline_events=[{"kind": "step", "payload": {"i": i}} for i in range(MIN_ROWS)],
    )
    states = _watch(monkeypatch, events_q)

    assert len(tk.list_tool_events(actor, sid)) == MIN_ROWS
    assert len(tk.list_timeline_events(actor, sid)) == MIN_ROWS
    assert states == [False] * (2 * MIN_ROWS)
    assert gc.isenabled()
