"""Schemathesis against a real uvicorn process: requests generated from the service's own
OpenAPI document, valid and not, for every operation it lists.

Each answer must be one the document promises (its status codes, content types and body
schemas), never a 5xx (the server is idle and ready: not even the 503 and 504 of a loaded
one), and data the document forbids must be refused. Not checked: that everything the
document allows is accepted. A request body's schema is the same for every model of a task
kind, so it cannot say how many features a row of this model has or which bytes decode as an
image; the service refuses those with a 4xx that says why, which other tests check.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.live_server import LiveServer

# Examples per operation and kind of data: enough to reach each route's kinds of refusal, in
# seconds.
EXAMPLES = 40


@pytest.fixture(scope="module")
def openapi(live_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


def operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_lists_the_predict_and_protocol_routes(
    openapi: schemathesis.BaseSchema,
) -> None:
    listed = {operation.label for operation in operations(openapi)}
    assert {
        "POST /predict/wine",
        "POST /predict/cifar",
        "POST /predict/{name}",
        "POST /v2/models/{name}/infer",
        "GET /models",
    } <= listed


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_every_answer_is_one_the_document_promises(
    openapi: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    """Positive data (the document allows it), every operation; negative data (it does not),
    every operation with a query or a body to break (a path's string has no wrong value)."""
    for operation in operations(openapi):
        if mode is GenerationMode.NEGATIVE and not (len(operation.query) or len(operation.body)):
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same requests on every run: a failure is reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answered_as_promised(case: schemathesis.Case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        answered_as_promised()
