"""
The delay grammar shared by C{?delay=} and the command line.
"""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayError, parse_delay

GRAMMAR = re.compile(r"[0-9]+(\.[0-9]+)?")


class ParseDelayTests(SynchronousTestCase):
    def test_accepts_digits_with_an_optional_fraction(self) -> None:
        self.assertEqual(parse_delay("2"), 2.0)
        self.assertEqual(parse_delay("0.5"), 0.5)
        self.assertEqual(parse_delay("007.250"), 7.25)
        self.assertEqual(parse_delay("60", 60), 60.0)

    def test_refuses_with_a_short_reason(self) -> None:
        for text in ["", "abc", "-1", "nan", "inf", "1e3", "1_0", "0x10", "\u0661"]:
            with self.subTest(text=text), self.assertRaises(DelayError) as caught:
                parse_delay(text, 60)
            self.assertTrue(str(caught.exception).startswith("delay"))

    def test_over_the_maximum_names_it(self) -> None:
        with self.assertRaises(DelayError) as caught:
            parse_delay("61", 60)
        self.assertEqual(
            str(caught.exception), "delay 61 s is over the maximum of 60 s"
        )

    def test_long_input_is_cut_in_the_reason(self) -> None:
        with self.assertRaises(DelayError) as caught:
            parse_delay("9" * 500, 60)
        self.assertLess(len(str(caught.exception)), 80)

    @given(st.text(max_size=12))
    def test_any_text_is_a_finite_bounded_delay_or_a_delay_error(
        self, text: str
    ) -> None:
        try:
            value = parse_delay(text, 60)
        except DelayError:
            self.assertFalse(GRAMMAR.fullmatch(text) and float(text) <= 60)
        else:
            self.assertTrue(GRAMMAR.fullmatch(text))
            self.assertTrue(math.isfinite(value) and 0 <= value <= 60)
