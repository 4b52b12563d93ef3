"""What a job document shows a reader without a token: no local path, no host name.

A job's error can name where the worker keeps the checkpoint (a folder, the Hub cache's
snapshot) and the Hub address it could not reach, and its lease owner is `host:pid:token`: all
of it is the operator's business. Readers with a token (and the command line, which reads the
database directly) see the document whole.
"""

import re

PATH_SHOWN = "<path>"
# An absolute path (or the `//host...` part of a URL): from a `/` that does not continue a
# word or a path, up to the next space or quote.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^\s'\"]*")
# Punctuation that ends a sentence rather than the path before it.
TRAILING = ":,;.)]"


def _hide(match: re.Match) -> str:
    text = match.group(0)
    core = text.rstrip(TRAILING)
    return PATH_SHOWN + text[len(core) :]


def redact_paths(text: str | None) -> str | None:
    return None if text is None else ABSOLUTE_PATH.sub(_hide, text)


def public_owner(owner: str | None) -> str | None:
    """`host:pid:token` -> `worker-token`: still tells two workers apart, names no machine."""
    if owner is None:
        return None
    return f"worker-{owner.rsplit(':', 1)[-1]}"
