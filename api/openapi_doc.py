"""What `/openapi.json` says about errors, completed once for every operation.

Routes declare their own refusals (404 for an unknown site, 409 for a state that does not allow an
action...). The answers that any operation can give are added here, so that no route has to repeat
them and none forgets them:

- 401 on every operation that takes a bearer token (no token, a bad or expired one, a disabled account);
- 400 on every operation with a request body (a body that cannot be parsed: not JSON, not UTF-8, a
  broken multipart form);
- every error's body: ``{"detail": "..."}``; a request that fails validation (422) also carries
  ``errors``, the list of what failed where (see ``api.app``'s handler).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

ERROR_REF = "#/components/schemas/ErrorPublic"
VALIDATION_ERROR_REF = "#/components/schemas/ValidationErrorPublic"


class ErrorPublic(BaseModel):
    """Every error of the API: one readable sentence."""

    detail: str = Field(examples=["ticket 12 not found"])


class ValidationErrorPublic(BaseModel):
    """A request that does not fit the operation's parameters or body (422)."""

    detail: str = Field(description="what is wrong, in one sentence (up to five problems)",
                        examples=["query.limit: Input should be less than or equal to 500"])
    errors: list[dict[str, Any]] = Field(
        default_factory=list,
        description="each problem: `loc` (where), `msg`, `type`; absent when the route itself refused the value",
    )


COMMON: dict[str, dict[str, str]] = {
    "401": {"description": "no bearer token, or one that is invalid or expired, or the account is disabled"},
    "400": {"description": "the body cannot be parsed (not JSON, not UTF-8, or a broken multipart form)"},
}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _hoist_local_defs(node: Any, components: dict[str, Any]) -> Any:
    """Inline JSON Schemas (a body a route documents itself) carry their own `$defs`, whose `#/$defs/X`
    references mean nothing in an OpenAPI document: move them to the components and point there."""
    if isinstance(node, list):
        return [_hoist_local_defs(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    for name, definition in node.pop("$defs", {}).items():
        components.setdefault(name, _hoist_local_defs(definition, components))
    return {
        key: value.replace("#/$defs/", "#/components/schemas/") if key == "$ref" and isinstance(value, str)
        else _hoist_local_defs(value, components)
        for key, value in node.items()
    }


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the common answers and the error bodies to every operation of `schema` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    schema["paths"] = _hoist_local_defs(schema.get("paths", {}), components)
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", dict(COMMON["401"]))
            if "requestBody" in operation:
                responses.setdefault("400", dict(COMMON["400"]))
            for code, answer in responses.items():
                if not code.isdigit() or int(code) < 400:
                    continue
                if code == "422":
                    answer["content"] = _json(VALIDATION_ERROR_REF)
                elif not answer.get("content"):
                    answer["content"] = _json(ERROR_REF)
            operation["responses"] = dict(sorted(responses.items()))
    for name in _FASTAPI_VALIDATION_SCHEMAS:  # FastAPI's shape (`detail` a list) is not what we send
        components.pop(name, None)
    for model in (ErrorPublic, ValidationErrorPublic):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed schema at `app.openapi_url` (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
