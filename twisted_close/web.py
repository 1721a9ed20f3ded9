"""
Small helpers for resources of your own that answer, refuse and log the way
this library's do: one-line plain-text errors, text from the network made
safe for a log line, and what a twisted.web request says of its connection.
"""

from ._http import not_allowed, plain_error, refusal
from ._text import describe_address, describe_client, printable, raw_text
from ._twisted.request import abort_request, request_state

__all__ = [
    "abort_request",
    "describe_address",
    "describe_client",
    "not_allowed",
    "plain_error",
    "printable",
    "raw_text",
    "refusal",
    "request_state",
]
