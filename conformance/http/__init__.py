"""Bounded, recorded, redacted HTTP against the target. One job per module, each importing only those
above it in this list:

    redact      no secret leaves the process: the key in headers, text and documents; URL passwords
    gate        how many requests are in flight, and whose go first
    transport   the deadline enforced inside every socket operation; cutting every connection
    exchange    one recorded request/response pair; the ways a request ends without an answer
    budget      every bound of a run (Limits); what a request costs in tokens
    session     what a run's checks share: the client, the budget, the breaker, the concurrency
    recorder    a check's requests: bounded, retried on 429/503, recorded
    preflight   the one request before a run
"""

from .budget import Limits
from .exchange import Exchange, RateLimited, TargetDown, TransportError, is_usable, limit_failure
from .gate import TooFewSlots, urgent
from .preflight import preflight
from .recorder import Recorder, fail_on_limit, retry_wait
from .redact import BEARER_PLACEHOLDER, MADE_UP_KEY_PREFIX, REDACTED, redact_url, scrub_key
from .session import Session, Target

__all__ = [
    "BEARER_PLACEHOLDER", "MADE_UP_KEY_PREFIX", "REDACTED", "Exchange", "Limits", "RateLimited", "Recorder",
    "Session", "Target", "TargetDown", "TooFewSlots", "TransportError", "fail_on_limit", "is_usable", "limit_failure",
    "preflight", "redact_url", "retry_wait", "scrub_key", "urgent",
]
