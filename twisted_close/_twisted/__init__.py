"""
Every reliance on Twisted behaviour that is not public API, split by area:
the request and its channel (L{request}, L{channel}), the failures Twisted
gives (L{failures}), HTTP/2 streams (L{h2}), TLS (L{tls}), TCP transports
(L{tcp}), wrapping what Twisted builds (L{wrapping}), and the reactor and
its ports (L{reactor}).  Facts of Linux sockets alone are in
L{twisted_close._linux}.

Each function says what it relies on, and C{tests/test_twisted_<area>.py}
pins each of those behaviours, so that a Twisted upgrade that changes one
fails there, loudly, rather than as a wrong outcome somewhere else.
"""
