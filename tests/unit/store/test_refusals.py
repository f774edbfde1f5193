"""What a failed store request means: a retry for an outage, else one error kind that says what to fix."""

from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from pipeline.errors import (
    PipelineError,
    StoreAccessError,
    StoreNotFoundError,
    StoreRequestError,
    UsageError,
)
from pipeline.store.refusals import PASSTHROUGH_CODES, client_error, is_transient, store_error

ENDPOINT = "http://127.0.0.1:8333"


def _answer(code: str, status: int, message: str = "") -> ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def _mapped(exc: BaseException) -> PipelineError | None:
    return store_error(exc, ENDPOINT, "cxr-demo", "writing s3://cxr-demo/k")


@pytest.mark.parametrize(
    ("code", "status", "kind", "advice"),
    [
        ("AccessDenied", 403, StoreAccessError, "may list, read and write"),
        ("InvalidAccessKeyId", 403, StoreAccessError, "check AWS_ACCESS_KEY_ID"),
        ("SignatureDoesNotMatch", 403, StoreAccessError, "check AWS_SECRET_ACCESS_KEY"),
        ("RequestTimeTooSkewed", 403, StoreAccessError, "correct the clock"),
        ("ExpiredToken", 400, StoreAccessError, "renew the credentials"),
        ("", 403, StoreAccessError, "its secret or its permissions are wrong"),
        ("NoSuchBucket", 404, StoreNotFoundError, "bucket 'cxr-demo' does not exist"),
        ("NoSuchKey", 404, StoreNotFoundError, "rerun (a rerun redoes what is missing)"),
        ("InvalidBucketName", 400, UsageError, "3-63 lowercase letters"),
        ("EntityTooLarge", 400, StoreRequestError, "would be refused again"),
    ],
)
def test_each_refusal_is_one_kind_naming_the_store_and_what_to_do(
    code: str, status: int, kind: type[PipelineError], advice: str
) -> None:
    mapped = _mapped(_answer(code, status))
    assert type(mapped) is kind
    assert ENDPOINT in str(mapped)
    assert advice in str(mapped)
    assert not mapped.retryable, "the same request would be refused again"


def test_missing_keys_say_which_settings_to_set() -> None:
    mapped = _mapped(NoCredentialsError())
    assert isinstance(mapped, StoreAccessError)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in str(mapped)


def test_an_outage_is_transient_and_left_to_the_retry() -> None:
    for exc in (EndpointConnectionError(endpoint_url=ENDPOINT), _answer("InternalError", 500), _answer("", 503)):
        assert is_transient(exc)
        assert _mapped(exc) is None
    assert not is_transient(_answer("AccessDenied", 403))


def test_an_upload_failure_is_judged_by_the_answer_it_wraps() -> None:
    """boto3's upload_file hides the store's answer in the exception's context."""
    outer = S3UploadFailedError("Failed to upload f to cxr-demo/k: AccessDenied")
    outer.__cause__ = _answer("AccessDenied", 403)
    assert client_error(outer) is outer.__cause__
    assert isinstance(_mapped(outer), StoreAccessError)
    assert not is_transient(outer)
    assert is_transient(S3UploadFailedError("Failed to upload f: An error occurred (500) ..."))


def test_the_answers_callers_act_on_pass_through() -> None:
    """A missing object is None to ``head``; a failed condition is ``ObjectExistsError`` to ``put_bytes``."""
    assert {"NoSuchKey", "404", "PreconditionFailed", "412"} <= PASSTHROUGH_CODES
    assert "AccessDenied" not in PASSTHROUGH_CODES
