"""What a failed store request means: transient (retry) or a refusal, mapped to an error kind that says what to do.

:func:`is_transient` tells :meth:`pipeline.store.storage.Store.retrying` which failures a retry may cure (the
endpoint is down or answers 5xx); :func:`store_error` turns every other failure into a kind of
:mod:`pipeline.errors` naming the endpoint, bucket or key and what to do.
"""

from __future__ import annotations

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline.errors import PipelineError, StoreAccessError, StoreNotFoundError, StoreRequestError, UsageError

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})
#: Error codes :meth:`Store.retrying` leaves as botocore's ``ClientError`` by default: its callers act on them
#: (a missing object is None, a failed condition is ``ObjectExistsError``); every other refusal becomes a
#: :class:`~pipeline.errors.StoreError` kind (see :func:`store_error`).
PASSTHROUGH_CODES = frozenset(MISSING_CODES | PRECONDITION_CODES)
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
        "403",
    }
)
_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the store's Airflow connection)"


def is_transient(exc: BaseException | None) -> bool:
    """Whether an error says the endpoint is down or overloaded (a retry may help), not that the request is wrong."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return isinstance(status, int) and status >= 500
    if isinstance(exc, S3UploadFailedError):
        return is_transient(exc.__cause__ or exc.__context__) or " (5" in str(exc)
    return False


def error_code(error: ClientError) -> str:
    """The store's error code (``NoSuchKey``, ``AccessDenied``, ``412``, ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def client_error(exc: BaseException | None) -> ClientError | None:
    """The ``ClientError`` that ``exc`` is or wraps (boto3's ``S3UploadFailedError`` hides one in its context)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ClientError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def endpoint_text(endpoint: str | None) -> str:
    """``object store at <endpoint>`` (``AWS`` when no endpoint is set): how messages name the store."""
    return f"object store at {endpoint or 'AWS'}"


def access_error(where: str, what: str, code: str, status: object) -> StoreAccessError:
    """The :class:`StoreAccessError` for a refused key, secret, token, clock or permission, with what to fix."""
    if code == "InvalidAccessKeyId":
        advice = "the store does not know this access key: check AWS_ACCESS_KEY_ID (or the connection's login)"
    elif code == "SignatureDoesNotMatch":
        advice = (
            "the secret key does not belong to the access key: check AWS_SECRET_ACCESS_KEY (or the password of the "
            "store's Airflow connection)"
        )
    elif code == "RequestTimeTooSkewed":
        advice = "this machine's clock differs too much from the store's: correct the clock (NTP) and rerun"
    elif code in {"ExpiredToken", "InvalidToken", "TokenRefreshRequired"}:
        advice = "the session token is expired or invalid: renew the credentials (AWS_SESSION_TOKEN) and rerun"
    elif code == "AccessDenied":
        advice = (
            "these keys may not do this: `cxr run` needs keys that may list, read and write the store (read-only "
            f"keys only list, show and verify releases); put the pipeline's keys in {_CREDENTIALS}"
        )
    else:  # a bare 403 (HEAD requests carry no error code): wrong key, wrong secret or no permission
        advice = f"the access key, its secret or its permissions are wrong: check {_CREDENTIALS}"
    return StoreAccessError(f"{where} refused {what} ({code or status}): {advice}")


def missing_bucket(endpoint: str | None, bucket: str, what: str) -> StoreNotFoundError:
    """The error for a bucket that does not exist."""
    return StoreNotFoundError(
        f"bucket {bucket!r} does not exist at {endpoint or 'AWS'} (while {what}): check the bucket in --store (or "
        "$CXR_STORE); `cxr run` creates a missing bucket when it starts, so a bucket that disappears during a run "
        "was deleted: rerun once it is back (a rerun resumes)"
    )


def store_error(exc: BaseException, endpoint: str | None, bucket: str, what: str) -> PipelineError | None:
    """The error kind a failed store request maps to, with the endpoint, bucket or key and what to do;
    None when ``exc`` is no refusal by the store (a bug, or a transient error :meth:`Store.retrying` handles).

    ``AccessDenied``, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch`` and other 403s are
    :class:`StoreAccessError`; ``NoSuchBucket``, ``NoSuchKey`` and 404s :class:`StoreNotFoundError`;
    ``InvalidBucketName`` a :class:`UsageError`; missing keys :class:`StoreAccessError`; any other 4xx
    :class:`StoreRequestError`. None of them is retried: the same request would be refused again.
    """
    where = endpoint_text(endpoint)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreAccessError(f"no keys for the {where} while {what} ({exc}): set {_CREDENTIALS}")
    error = client_error(exc)
    if error is not None:
        return _refusal(error, endpoint, bucket, what)
    return StoreRequestError(f"{where} refused {what}: {exc}") if isinstance(exc, S3UploadFailedError) else None


def _refusal(error: ClientError, endpoint: str | None, bucket: str, what: str) -> PipelineError | None:
    where = endpoint_text(endpoint)
    code = error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    message = str(error.response.get("Error", {}).get("Message", "")) or str(status)
    if code in _ACCESS_CODES or status == 403:
        return access_error(where, what, code, status)
    if code == "NoSuchBucket":
        return missing_bucket(endpoint, bucket, what)
    if code == "InvalidBucketName":
        return UsageError(
            f"{where} refused the bucket name {bucket!r} (InvalidBucketName) while {what}: choose a bucket named with "
            "3-63 lowercase letters, digits, dots and hyphens"
        )
    if code in MISSING_CODES or code in {"NoSuchUpload", "NoSuchVersion"} or status == 404:
        return StoreNotFoundError(
            f"{where} has no such object while {what} ({code or status}): it was deleted, or the step that writes "
            "it did not finish; rerun (a rerun redoes what is missing)"
        )
    if isinstance(status, int) and 400 <= status < 500:
        return StoreRequestError(
            f"{where} refused {what} ({code or status}: {message}); the same request would be refused again: "
            "check the store location and the store's settings"
        )
    return None
