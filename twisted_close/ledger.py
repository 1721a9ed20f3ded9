"""
The ledger's counters as values (L{Totals}), what can sum them up
(L{CountsSource}: a L{twisted_close.Ledger}, or several processes' shared
counters), the bounds of the histogram of time until a client left, and
where the L{twisted_close.Limits} keep their counts when several processes
share them (L{LimitCounts}).
"""

from ._ledger import WAIT_BUCKETS, CountsSource, Totals
from ._limits import LimitCounts

__all__ = ["WAIT_BUCKETS", "CountsSource", "LimitCounts", "Totals"]
