"""Keep credentials out of what is printed, logged and stored.

One rule for every URI the suite shows: `redact_uri` replaces the password of its
userinfo (``scheme://user:password@host``) and the values of secret-looking query
parameters (``?password=...``, ``?token=...``) with ``***``. `redact_text` applies it
to every URI inside a message. `is_secret_name` says which environment variables hold
secrets (``*PASSWORD*``, ``*PASSWD*``, ``*TOKEN*``, ``*SECRET*``, ``*KEY*``,
``*CREDENTIAL*``): a config value expanded from one of them is logged as its
``${NAME}`` template, never as its value (`evoprune_tf.experiment.config.ExperimentConfig.to_dict`).

A redacted URI cannot be used to connect; `usable_uri` turns one back into a usable
URI from the environment (``MLFLOW_TRACKING_URI``, or ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``), or says in one line what to set.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_uri", "redact_text", "is_redacted", "is_secret_name", "strip_credentials",
           "usable_uri"]

#: What a secret is replaced with.
REDACTED = "***"

_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
# A URI inside free text: scheme://, then anything up to white space or a quote.
_TEMPLATE = re.compile(r"\$\{\w+\}")
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable (or query parameter) name looks like it holds a secret.

    Args:
        name: e.g. ``"MY_API_TOKEN"``, ``"password"``.

    Returns:
        True when it contains PASSWORD, PASSWD, TOKEN, SECRET, KEY or CREDENTIAL (any case).
    """
    return bool(_SECRET_NAME.search(name))


def redact_uri(uri: str) -> str:
    """The URI with its password and secret query values replaced by ``***``.

    ``postgresql://alice:pw@db:5432/mlflow`` -> ``postgresql://alice:***@db:5432/mlflow``;
    ``http://host/?token=abc`` -> ``http://host/?token=***``. A URI without secrets
    (``sqlite:///...``, ``http://host:5000``) comes back unchanged; so does one already
    redacted.

    Args:
        uri: any URI (or plain text, returned as it is).

    Returns:
        The redacted URI.
    """
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. a malformed IPv6 host: hide everything between :// and @
        return re.sub(r"(://[^/@]*?:)[^/@]*@", rf"\g<1>{REDACTED}@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon and password and not _TEMPLATE.fullmatch(password):  # "${NAME}" is no secret: kept
            netloc = f"{user}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) and v and v != REDACTED for k, v in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) and v else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URI inside ``text`` passed through `redact_uri` (error messages, printed lines)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URI_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)


def is_redacted(uri: str | None) -> bool:
    """Whether a URI had a secret replaced by `redact_uri` (it cannot be used to connect)."""
    return bool(uri) and REDACTED in str(uri) and redact_uri(str(uri)) == uri


def strip_credentials(uri: str) -> str:
    """The URI without its userinfo (``http://alice:pw@host`` -> ``http://host``)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def usable_uri(uri: str, what: str = "tracking URI") -> str:
    """A URI that can be connected to, for one whose password was redacted when it was stored.

    A URI that was not redacted comes back unchanged. For a redacted one:
    ``$MLFLOW_TRACKING_URI`` when it names the same store (same URI once redacted);
    else, with ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` set, the
    URI without its userinfo (MLflow sends those credentials itself).

    Args:
        uri: a URI as stored (a checkpoint's or a logged config's).
        what: names the URI in the error.

    Returns:
        The URI to use.

    Raises:
        ValueError: the password is needed and the environment does not provide it.
    """
    if not is_redacted(uri):
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env and redact_uri(env) == uri:
        return env
    if os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return strip_credentials(uri)
    raise ValueError(
        f"{what} {uri} was stored without its password; expected MLFLOW_TRACKING_URI set to it with the password,"
        " or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )
