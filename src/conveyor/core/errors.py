"""The one error family. Every error a user can cause says what went wrong and what to do.

The CLI prints `str(error)` on one line and exits with `exit_code`; the API maps the same
errors to 4xx answers. Anything that is not a `ConveyorError` is a bug in Conveyor.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(ConveyorError):
    """conveyor.toml or a CONVEYOR_* variable is malformed or names an unknown setting."""


class InvalidURLError(ConveyorError):
    """A metadata or object-store URL Conveyor cannot use."""


class WorkspaceNotFoundError(ConveyorError):
    """No workspace at the given path, in CONVEYOR_HOME or up the directory tree."""


class WorkspaceExistsError(ConveyorError):
    """`init` was pointed at a folder that already holds a workspace."""


class MissingExtraError(ConveyorError):
    """An optional dependency (s3fs, psycopg, ray...) is needed but not installed."""


class MetadataUnreachableError(ConveyorError):
    """The metadata database cannot be opened or does not answer."""


class ObjectStoreUnreachableError(ConveyorError):
    """The object store (folder or bucket) cannot be read or written."""


class ObjectNotFoundError(ConveyorError):
    """No object is stored under the requested content address."""


class ObjectCorruptedError(ConveyorError):
    """An object's bytes no longer hash to its address: storage lost or altered them."""


class RunNotFoundError(ConveyorError):
    """No tracked run with that id, or no metric or artifact by that name in it."""


class InvalidFilterError(ConveyorError):
    """A run search filter or order-by that does not parse; the message names the token."""


class InvalidRunInputError(ConveyorError):
    """A value given to a run (status, metric value, artifact) that cannot be recorded."""


class TrainingError(ConveyorError):
    """Training cannot start or go on: a bad argument, a model that does not fit the data."""


class CallbackError(TrainingError):
    """A user hook (step_fn, batch_fn, loss_fn, eval_fn) raised; the message names it."""


class CheckpointError(ConveyorError):
    """A checkpoint cannot be written or read back."""


class CheckpointNotFoundError(CheckpointError):
    """No checkpoint for that run or at that address."""


class JobSpecError(ConveyorError):
    """A job spec that cannot run: no entry point, bad resources, a malformed duration."""


class JobNotFoundError(ConveyorError):
    """No job with that id (or unique id prefix) in this workspace."""


class ExecutorError(ConveyorError):
    """An executor cannot be used: unknown name, unreachable Ray cluster, lost placement."""


class ServingError(ConveyorError):
    """A model cannot be served: unknown reference, missing runtime, bad server option.

    `status` is the HTTP answer the serving API gives for it (and its subclasses).
    """

    status = 400


class InvalidInputError(ServingError):
    """A request payload that does not fit the model's signature; `field` names the spot."""

    status = 422

    def __init__(self, message: str, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field


class ModelNotServedError(ServingError):
    """A request for a model or version this server does not serve."""

    status = 404


class PayloadTooLargeError(ServingError):
    """A request body over the server's size limit."""

    status = 413


class AuthError(ServingError):
    """A missing, unknown or revoked API key (401), or one without the scope needed (403)."""

    status = 401

    def __init__(self, message: str, hint: str | None = None, status: int = 401) -> None:
        super().__init__(message, hint)
        self.status = status


class ServerBusyError(ServingError):
    """The queue is too deep, a key's rate is spent or a request waited too long.

    Answered with `status` (429 or 503) and a Retry-After of `retry_after` seconds.
    """

    status = 503

    def __init__(
        self, message: str, hint: str | None = None, retry_after: float = 1.0, status: int = 503
    ) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after
        self.status = status


class InferenceError(ServingError):
    """The model raised on a request's rows (the rest of its batch still answered)."""

    status = 500


class DriftInputError(ConveyorError):
    """A drift check cannot run as asked: a column one side lacks, a schema that changed."""


class MonitorInputError(ConveyorError):
    """A monitoring figure cannot be computed as asked: a table without the columns it
    needs (predictions, labels, a labelled dataset version), a bad bucket size."""


class MonitorConfigError(ConveyorError):
    """A monitor config (alert rules, webhooks) that cannot be used; the message names the
    spot and what to write instead (spec: monitoring/ALERTS.md)."""


def yaml_problem(e: Exception) -> str:
    """Where a YAML file stops parsing and why, for a one-line message (a yaml.YAMLError)."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        problem = getattr(e, "problem", None) or getattr(e, "context", None)
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(e) or type(e).__name__
