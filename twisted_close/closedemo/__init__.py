"""
The C{twistd closedemo} application, built on the L{twisted_close} library:
its options and service (L{tap}), its site (L{site}), the live demo page
(L{page}) and its outcome stream (L{outcomes}), and the worker processes
(L{workers}, L{worker}) with their shared counters (L{shared}).

The library never imports this package.
"""
