"""Classification of the documented error answers of both services, so the engine and the admin can act on them."""

import pickle

import pytest

from connectors.errors import error_from_parts
from connectors.types import ConnectorError, ErrorKind


def body(code, message):
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (409, "Request_EntityChanged", "Another user has already changed the record.", ErrorKind.CONFLICT),
        (
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
            ErrorKind.CONFLICT,
        ),
        (
            412,
            "",
            "The version of the existing record doesn't match the RowVersion property provided.",
            ErrorKind.CONFLICT,
        ),
        (
            404,
            "0x80040217",
            "account With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist",
            ErrorKind.NOT_FOUND,
        ),
        (
            400,
            "Internal_RecordNotFound",
            "The Salesperson/Purchaser does not exist. Identification fields and values: Code='BC2'",
            ErrorKind.MISSING_DEPENDENCY,
        ),
        (
            400,
            "Internal_InvalidTableRelation",
            "The field Currency Code of table Customer contains a value (XYZ) "
            "that cannot be found in the related table (Currency).",
            ErrorKind.MISSING_DEPENDENCY,
        ),
        (
            400,
            "Application_StringExceededLength",
            "The length of the string is 57, but it must be less than or equal to 50 characters. Value: x",
            ErrorKind.VALIDATION,
        ),
        (
            400,
            "0x80044331",
            "A validation error occurred.  The length of the 'subject' attribute of the 'task' "
            "entity exceeded the maximum allowed length of '200'.",
            ErrorKind.VALIDATION,
        ),
        (400, "BadRequest_NotFound", "Bad Request - Error in query syntax.", ErrorKind.VALIDATION),
        (401, "Authentication_InvalidCredentials", "The credentials provided are incorrect", ErrorKind.AUTHENTICATION),
        (403, "0x80040220", "Principal user is missing prvReadAccount privilege.", ErrorKind.PERMISSION),
        (
            429,
            "0x80072322",
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            ErrorKind.THROTTLED,
        ),
        (503, "", "The service is temporarily unavailable.", ErrorKind.TRANSIENT),
        (504, "", "Gateway timeout", ErrorKind.TRANSIENT),
        (404, "Internal_CompanyNotFound", "The company does not exist.", ErrorKind.NOT_FOUND),
    ],
)
def test_documented_errors_are_classified(status, code, message, kind):
    error = error_from_parts(status, body(code, message), {})
    assert error.kind == kind
    assert error.remote_code == code and error.status == status and error.message == message


def test_validation_errors_name_the_field_and_keep_the_correlation_id():
    error = error_from_parts(
        400,
        body(
            "0x80044331",
            "A validation error occurred.  The length of the 'name' attribute of the 'account' entity exceeded the "
            "maximum allowed length of '160'.",
        ),
        {"x-ms-service-request-id": "5f0a3c1e-0000-0000-0000-000000000000"},
    )
    assert error.field == "name" and error.correlation_id == "5f0a3c1e-0000-0000-0000-000000000000"
    bc = error_from_parts(
        400,
        body(
            "BadRequest_RequiredParamNotProvided",
            "Field 'displayName' must not be blank or empty.  CorrelationId:  2b1c4c9e-0000-0000-0000-000000000000.",
        ),
    )
    assert bc.field == "displayName" and bc.correlation_id == "2b1c4c9e-0000-0000-0000-000000000000"


def test_a_classified_error_survives_pickling_with_every_detail():
    error = ConnectorError(
        ErrorKind.CONFLICT, "changed", status=409, remote_code="Request_EntityChanged", correlation_id="c", field="f"
    )
    error.outcome_unknown = True
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (copy.kind, copy.message, copy.status, copy.remote_code, copy.correlation_id, copy.field) == (
        ErrorKind.CONFLICT,
        "changed",
        409,
        "Request_EntityChanged",
        "c",
        "f",
    )
    assert copy.outcome_unknown and not copy.kind.is_retryable
