"""The shell's console in-process: the y/N question, one-line errors, notices from other threads
and tab completion, with the terminal replaced by strings."""

from __future__ import annotations

import io
import threading
import unittest
from typing import Any, List, Tuple
from unittest import mock

from sta import console
from sta.console import Completer, Console


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def make_console() -> Console:
    return Console(NotATerminal(), NotATerminal(), NotATerminal())


class AskTest(unittest.TestCase):
    def ask(self, answers: List[Any]) -> Tuple[bool, str, int]:
        term = make_console()
        with mock.patch("builtins.input", side_effect=answers) as typed:
            result = term.ask("Delete? [y/N] ")
        return result, term.stderr.getvalue(), typed.call_count

    def test_yes_in_any_case_is_yes(self) -> None:
        for answer in ("y", "YES", " yes "):
            self.assertEqual(self.ask([answer])[:2], (True, ""))

    def test_no_and_an_empty_answer_are_no(self) -> None:
        for answer in ("n", "No", ""):
            self.assertEqual(self.ask([answer])[:2], (False, ""))

    def test_a_command_typed_as_the_answer_asks_again(self) -> None:
        result, err, asked = self.ask(["status", "y"])
        self.assertEqual((result, asked), (True, 2))
        self.assertEqual(err, "answer y or n\n")

    def test_answers_that_never_fit_end_as_no_after_a_bound(self) -> None:
        result, err, asked = self.ask(["status"] * 10)
        self.assertEqual((result, asked), (False, console.MAX_ANSWER_ATTEMPTS))
        self.assertTrue(err.endswith("no answer; taken as no\n"), err)

    def test_end_of_input_and_ctrl_c_are_no(self) -> None:
        for stop in (EOFError, KeyboardInterrupt):
            result, _, asked = self.ask([stop])
            self.assertEqual((result, asked), (False, 1))

    def test_answer_is_taken_out_of_the_readline_history(self) -> None:
        term = make_console()
        history = ["remove 1 --delete-files", "y"]
        term.readline = mock.Mock(
            get_current_history_length=lambda: len(history),
            get_history_item=lambda n: history[n - 1],
            remove_history_item=lambda i: history.pop(i))
        with mock.patch("builtins.input", return_value="y"):
            self.assertTrue(term.ask("? "))
        self.assertEqual(history, ["remove 1 --delete-files"])


class ErrorTest(unittest.TestCase):
    def test_user_error_is_its_message_alone(self) -> None:
        term = make_console()
        term.report(FileNotFoundError(2, "No such file or directory", "x.torrent"))
        # errors.describe_error words it plainly ("no such file or folder").
        self.assertEqual(term.stderr.getvalue(), "x.torrent: no such file or folder\n")

    def test_notices_and_errors_carry_no_terminal_escapes(self) -> None:
        term = make_console()
        term.notice("evil\x1b[2J\x1b]0;title\x07name\x9b31m done")
        term.error("bad\x1b[31m name\rhere")
        text = term.stderr.getvalue()
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x9b", text)
        self.assertNotIn("\r", text)
        self.assertEqual(text.count("\n"), 2)

    def test_bug_shows_its_traceback(self) -> None:
        term = make_console()
        try:
            raise KeyError("oops")
        except KeyError as exc:
            term.report(exc)
        self.assertIn("Traceback", term.stderr.getvalue())
        self.assertIn("KeyError: 'oops'", term.stderr.getvalue())


class NoticeTest(unittest.TestCase):
    def test_notice_from_another_thread_is_written_whole_by_the_notice_thread(self) -> None:
        term = make_console()
        term.start()
        self.addCleanup(term.stop)
        with term.lock:  # a command is running: the notice waits for it
            worker = threading.Thread(target=term.notice, args=("done",))
            worker.start()
            worker.join(5)
            term.stdout.write("table\n")
        term.stop()
        self.assertEqual(term.stdout.getvalue(), "table\n")
        self.assertEqual(term.stderr.getvalue(), "done\n")


class CompleterTest(unittest.TestCase):
    def complete(self, line: str, text: str) -> List[str]:
        readline = mock.Mock(get_line_buffer=lambda: line,
                             get_begidx=lambda: len(line) - len(text))
        completer = Completer(readline, ("status", "stats", "peers", "help"),
                              {"peers": ["--json"]}, takes_command=("help",),
                              takes_torrent=("peers",),
                              torrent_names=lambda: ["notes.bin", "my file"])
        found = []
        for state in range(10):
            match = completer.complete(text, state)
            if match is None:
                break
            found.append(match)
        return found

    def test_commands_options_and_quoted_torrent_names(self) -> None:
        self.assertEqual(self.complete("sta", "sta"), ["status ", "stats "])
        self.assertEqual(self.complete("peers --", "--"), ["--json "])
        self.assertEqual(self.complete("help pe", "pe"), ["peers "])
        self.assertEqual(self.complete("peers my", "my"), ["'my file' "])


if __name__ == "__main__":
    unittest.main()
