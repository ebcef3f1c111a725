"""One error hierarchy for RecLoop, each kind of failure carrying its command exit code.

Every command ends the same way for the same kind of failure (README, "Exit codes"):

| code | meaning |
| --- | --- |
| 0 | done, every threshold or gate passed |
| 1 | it ran, but a threshold or a comparison gate failed |
| 2 | bad input: configuration, scenario, data, recording or option; nothing was sent |
| 3 | it could not run: broker unreachable, worker not answering, internal error |

The CLI's one error handler (`recloop.cli.app`) prints a `RecLoopError` as one line and
exits with its code, so an error message must say what is wrong and what to do.
"""

from __future__ import annotations

import logging
import ssl

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_ERROR = 3


class RecLoopError(Exception):
    """Base of RecLoop's own errors; `exit_code` is what a command exits with."""

    exit_code: int = EXIT_ERROR


class InvalidInputError(RecLoopError):
    """The user's input (settings, scenario, data, recording, option) is wrong."""

    exit_code = EXIT_INVALID


class CheckFailedError(RecLoopError):
    """The run completed, but a threshold or a regression gate failed."""

    exit_code = EXIT_FAILED


class RunError(RecLoopError):
    """The run could not start or finish: a broker, a worker or a model is unavailable."""

    exit_code = EXIT_ERROR


class _ConnectFailures(logging.Filter):
    """Remembers why aiokafka's last connection failed: it logs the cause (a refused connection,
    a failed SASL authentication, an untrusted certificate) and raises only "Unable to
    bootstrap". When no logging is configured (the short CLI commands) the log line is dropped,
    since the command's one error line carries the cause; a configured log (the worker's) keeps it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Unable connect to"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        cause = args[-1] if args else None
        self.last = cause if isinstance(cause, BaseException) else None
        return bool(logging.getLogger().handlers)


_CONNECT_FAILURES = _ConnectFailures()
logging.getLogger("aiokafka").addFilter(_CONNECT_FAILURES)  # aiokafka.client logs as "aiokafka"


def _explain(cause: BaseException, protocol: str) -> str | None:
    """What to do about a connection failure aiokafka logged, or None if it is not a security one."""
    name = type(cause).__name__
    if name == "SaslAuthenticationFailed":
        return (
            f"SASL authentication failed ({cause}); check RECLOOP_SECURITY__SASL_USERNAME, "
            "RECLOOP_SECURITY__SASL_PASSWORD and RECLOOP_SECURITY__SASL_MECHANISM"
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate verify failed ({cause.verify_message}); set "
            "RECLOOP_SECURITY__SSL_CAFILE to the CA that signed it"
        )
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed ({cause}); check the RECLOOP_SECURITY__SSL_* files"
    if "SSL" in protocol and name == "KafkaConnectionError" and "closed" in str(cause):
        # TLS 1.3: the client's handshake completes before the broker checks the client's
        # certificate, so a rejected or missing one shows up as the broker hanging up.
        return (
            "the broker closed the TLS connection: it requires a client certificate it trusts; "
            "check RECLOOP_SECURITY__SSL_CERTFILE and RECLOOP_SECURITY__SSL_KEYFILE"
        )
    return None


def kafka_unreachable(bootstrap: str, cause: BaseException, protocol: str = "PLAINTEXT") -> str:
    """The one message for a Kafka cluster that cannot be reached, with what to do about it.

    `protocol` is the configured security protocol; a security failure aiokafka logged while
    connecting (wrong password, untrusted certificate) is named instead of the generic cause.
    """
    last, _CONNECT_FAILURES.last = _CONNECT_FAILURES.last, None
    if last is not None and (why := _explain(last, protocol)):
        return f"cannot connect to Kafka at {bootstrap}: {why}"
    return (
        f"cannot reach Kafka at {bootstrap}: {cause}; start a broker (`recloop broker`) "
        "or set RECLOOP_BOOTSTRAP"
    )
