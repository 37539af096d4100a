"""The last gate on the site's ClientApp: every outgoing reply passes `shared.protocol.reply_problems`, and every error leaves as a fixed code.

The handlers already build only the documented message; this mod is independent of them and
of what the server asked for. A reply that breaks the protocol is replaced by an error reply;
an exception in a handler (a policy refusal, a bad request, a bug) becomes an error reply with
a fixed reason. No exception text, offending value or file content leaves the site: the
details go to the site's own log.
"""

from __future__ import annotations

import logging
from typing import Callable

from flwr.app import Context, Error, Message

from fedxalign.shared.privacy.policy import PolicyRefusal
from fedxalign.shared.protocol import BadRequest, ReplySpec, message_records, reply_problems

log = logging.getLogger(__name__)

WITHHELD = 403  # the reply broke the protocol and was not sent
REFUSED_BY_POLICY = 451  # the request would weaken the site's policy; reason names the policy key
BAD_REQUEST = 400  # the coordinator's broadcast is unusable (wrong shapes, non-finite values)
SITE_ERROR = 500  # anything else; the site's log has the details

SpecFor = Callable[[Context], ReplySpec]


def _error(msg: Message, code: int, reason: str) -> Message:
    return Message(Error(code=code, reason=reason), reply_to=msg)


def make_allowlist_mod(spec_for: SpecFor):
    """The mod, with `spec_for(context)` giving the sizes and budget a train/evaluate reply must respect."""

    def allowlist_mod(msg: Message, context: Context, call_next) -> Message:
        kind = msg.metadata.message_type
        try:
            reply = call_next(msg, context)
            if reply.has_error():
                log.error("reply to %s was an error (%s); sending a fixed code only", kind, reply.error.reason)
                return _error(msg, SITE_ERROR, "site error; details are in the site's log")
            problems = reply_problems(kind, message_records(reply.content), None if kind == "query" else spec_for(context))
        except PolicyRefusal as err:
            log.warning("%s refused: %s", kind, err)
            return _error(msg, REFUSED_BY_POLICY, f"refused by site policy: {err.key}")
        except BadRequest as err:
            log.warning("%s refused: %s", kind, err)
            return _error(msg, BAD_REQUEST, "refused: the request is not a usable global state")
        except Exception:  # noqa: BLE001 - nothing of an exception may leave the site
            log.exception("%s failed at the site", kind)
            return _error(msg, SITE_ERROR, "site error; details are in the site's log")
        if problems:
            log.error("reply to %s withheld: not in the protocol: %s", kind, problems)
            return _error(msg, WITHHELD, "withheld by the site's allow-list")
        return reply

    return allowlist_mod
