"""Answers serialised where they were built, for the routes every chat calls.

A sync route returning a model costs FastAPI two more things after the route
has run: a second trip to the thread pool, to validate the returned value
against the response model again, and then the serialisation. On the routes
that run per message (append, read the last N) that trip cost more than the
database work. These routes declare their ``response_model`` for the OpenAPI
schema as before, but return the model already encoded, in the worker thread
that built it, with pydantic's own serialiser: the same JSON, without the
second validation. ``tests/api/test_encoded_answers.py`` checks each answer
against pydantic's JSON mode of the same model.
"""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def encoded(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the JSON FastAPI would have sent for it."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json"
    )
