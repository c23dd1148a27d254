import random
import unittest

from sta.superseed import REVEAL_AT_ONCE, SuperSeeder


class SuperSeederTests(unittest.TestCase):
    def test_each_peer_is_shown_different_pieces_first(self):
        s = SuperSeeder(8, random.Random(1))
        shown = [set(s.peer_joined(peer)) for peer in "abcd"]
        self.assertTrue(all(len(x) == REVEAL_AT_ONCE for x in shown))
        self.assertEqual(len(set().union(*shown)), 4 * REVEAL_AT_ONCE)

    def test_only_revealed_pieces_are_served(self):
        s = SuperSeeder(8, random.Random(2))
        shown = s.peer_joined("a")
        self.assertTrue(all(s.may_serve("a", i) for i in shown))
        hidden = [i for i in range(8) if i not in shown]
        self.assertFalse(any(s.may_serve("a", i) for i in hidden))
        self.assertFalse(s.may_serve("stranger", shown[0]))

    def test_a_piece_the_peer_got_is_replaced_by_a_new_one(self):
        s = SuperSeeder(8, random.Random(3))
        first = s.peer_joined("a")
        more = s.peer_has("a", first[0])
        self.assertEqual(len(more), 1)
        self.assertNotIn(more[0], first)
        self.assertFalse(s.may_serve("a", first[0]))

    def test_pieces_a_peer_already_has_are_never_revealed_to_it(self):
        s = SuperSeeder(4, random.Random(4))
        shown = s.peer_joined("a", {0, 1, 2})
        self.assertEqual(shown, [3])
        self.assertEqual(s.peer_has("a", 3), [])

    def test_a_peer_that_leaves_frees_its_counts(self):
        s = SuperSeeder(4, random.Random(5))
        s.peer_joined("a", {0})
        s.peer_left("a")
        self.assertEqual(s.revealed("a"), set())
        self.assertEqual(s.peer_has("a", 1), [])


if __name__ == "__main__":
    unittest.main()
