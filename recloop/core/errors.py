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


def kafka_unreachable(bootstrap: str, cause: BaseException) -> str:
    """The one message for a Kafka cluster that cannot be reached, with what to do about it."""
    return (
        f"cannot reach Kafka at {bootstrap}: {cause}; start a broker (`recloop broker`) "
        "or set RECLOOP_BOOTSTRAP"
    )
