"""
The ledger's counters as values (L{Totals}), what can sum them up
(L{CountsSource}: a L{twisted_close.Ledger}, or several processes' shared
counters), and the bounds of the histogram of time until a client left.
"""

from ._ledger import WAIT_BUCKETS, CountsSource, Totals

__all__ = ["WAIT_BUCKETS", "CountsSource", "Totals"]
