"""
Building blocks of streamed answers beyond L{twisted_close.EventStreamResource}:
a response written a piece at a time while the client reads
(L{PushStream}), the resource that admits, keeps and ends such streams
(L{StreamsResource}), and the headers and checks they share.
"""

from ._stream import (
    DEFAULT_MAX_UNSENT,
    PushStream,
    StreamsResource,
    positive_seconds,
    stream_headers,
)

__all__ = [
    "DEFAULT_MAX_UNSENT",
    "PushStream",
    "StreamsResource",
    "positive_seconds",
    "stream_headers",
]
