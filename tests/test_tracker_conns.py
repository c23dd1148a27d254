"""Tests of the tracker's connection table: limits, who is closed to make room, deadlines.
Sans-IO: plain objects stand in for sockets and the clock is moved by hand."""

from __future__ import annotations

import unittest

from sta import tracker_conns
from sta.tracker_conns import BodyBudget, ConnectionTable
from tests.test_tracker import Clock


class ConnectionTableTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.table = ConnectionTable(self.clock)

    def admit(self, address: str = "10.0.0.1"):
        slot, evicted = self.table.admit(address, object())
        self.assertIsNotNone(slot)
        return slot, evicted

    def test_connections_from_one_address_past_its_limit_close_its_longest_waiting(self):
        slots = []
        for _ in range(tracker_conns.MAX_CONNECTIONS_PER_ADDRESS):
            slots.append(self.admit()[0])
            self.clock.now += 0.01
        slots[0].answering(self.clock.now)  # busy: never closed early
        _, evicted = self.admit()
        self.assertEqual(evicted, [slots[1]])
        self.assertEqual(len(self.table.slots()), tracker_conns.MAX_CONNECTIONS_PER_ADDRESS)
        self.assertTrue(slots[1].closed)

    def test_full_address_of_busy_connections_refuses_a_new_one(self):
        for _ in range(tracker_conns.MAX_CONNECTIONS_PER_ADDRESS):
            self.admit()[0].answering(self.clock.now)
        slot, evicted = self.table.admit("10.0.0.1", object())
        self.assertEqual((slot, evicted), (None, []))
        self.assertIsNotNone(self.table.admit("10.0.0.2", object())[0])

    def test_full_table_closes_the_longest_waiting_connection_of_any_address(self):
        per_address = tracker_conns.MAX_CONNECTIONS_PER_ADDRESS
        first = None
        for n in range(tracker_conns.MAX_CONNECTIONS):
            slot = self.admit("10.0.%d.1" % (n // per_address))[0]
            first = first or slot
            self.clock.now += 0.001
        slot, evicted = self.table.admit("10.9.9.9", object())
        self.assertIsNotNone(slot)
        self.assertEqual(evicted, [first])
        self.assertEqual(len(self.table.slots()), tracker_conns.MAX_CONNECTIONS)

    def test_a_whole_request_must_arrive_within_the_request_timeout(self):
        slot = self.admit()[0]
        self.clock.now += tracker_conns.REQUEST_TIMEOUT - 0.1
        self.assertEqual(self.table.expired(), [])
        self.clock.now += 0.2
        self.assertEqual(self.table.expired(), [slot])
        self.assertEqual(len(self.table.slots()), 0)

    def test_kept_alive_connection_gets_the_idle_timeout_for_its_next_request(self):
        slot = self.admit()[0]
        slot.answering(self.clock.now)
        self.clock.now += tracker_conns.ANSWER_TIMEOUT - 0.1
        self.assertEqual(self.table.expired(), [])
        slot.wait_for_request(self.clock.now)
        self.clock.now += tracker_conns.IDLE_TIMEOUT + 0.1
        self.assertEqual(self.table.expired(), [slot])

    def test_a_body_gets_time_at_the_minimum_rate(self):
        slot = self.admit()[0]
        slot.receiving_body(10 * tracker_conns.MIN_BODY_RATE)
        self.clock.now += tracker_conns.REQUEST_TIMEOUT + 9
        self.assertEqual(self.table.expired(), [])
        self.clock.now += 2
        self.assertEqual(self.table.expired(), [slot])

    def test_release_of_a_connection_already_closed_is_ignored(self):
        slot = self.admit()[0]
        self.clock.now += tracker_conns.REQUEST_TIMEOUT + 1
        self.table.expired()
        self.table.release(slot)
        self.assertEqual(self.table.slots(), [])


class BodyBudgetTests(unittest.TestCase):
    def test_reservations_past_the_limit_are_refused_until_released(self):
        budget = BodyBudget(100)
        self.assertTrue(budget.reserve(60))
        self.assertFalse(budget.reserve(41))
        budget.release(60)
        self.assertTrue(budget.reserve(100))


if __name__ == "__main__":
    unittest.main()
