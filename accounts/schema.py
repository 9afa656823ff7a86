"""OpenAPI: how clients authenticate, and the error responses every operation can give.

drf-spectacular documents success responses; clients (and schemathesis) also need the errors: validation (400),
authentication (401), role (403), unknown object (404), body too large (413), wrong content type (415),
request rate or sign-in lockout (429). All of them are JSON; all but 400 are {"detail": "..."}.
"""

from typing import Any

from drf_spectacular.authentication import SessionScheme, TokenScheme


class ApiTokenScheme(TokenScheme):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API token as "Token <key>"; see POST /api/auth/token/ (or ask an admin for one).',
        }


class DashboardSessionScheme(SessionScheme):
    target_class = "accounts.authentication.DashboardSessionAuthentication"
    name = "cookieAuth"
    priority = 1


ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "What went wrong.",
}
VALIDATION_ERROR = {
    "type": "object",
    "additionalProperties": True,
    "description": 'Per field (or "non_field_errors" / "detail"): what is wrong with the request.',
}


def _response(description: str, component: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationError", VALIDATION_ERROR)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                # DRF reads an optional query parameter given empty (?until=) as not given.
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter.setdefault("allowEmptyValue", True)
            responses = operation.setdefault("responses", {})
            authenticated = {} not in operation.get("security", [{}])
            extra: dict[str, dict[str, Any]] = {}
            if operation.get("parameters") or operation.get("requestBody"):
                extra["400"] = _response("Invalid request: see the body for each field's problem.", "ValidationError")
            if authenticated:
                extra["401"] = _response("Not signed in: no, an invalid, expired or revoked token.", "Error")
                extra["403"] = _response("Your role does not allow this.", "Error")
            if "{" in path:
                extra["404"] = _response("No such object.", "Error")
            elif any(p.get("name") == "page" for p in operation.get("parameters", [])):
                extra["404"] = _response("No such page (beyond the last one).", "Error")
            if operation.get("requestBody"):
                extra["413"] = _response("Request body too large.", "Error")
                extra["415"] = _response("Unsupported content type: send JSON.", "Error")
            extra["429"] = _response("Too many requests (see Retry-After), or sign-in locked out.", "Error")
            for code, response in extra.items():
                responses.setdefault(code, response)
            operation["responses"] = dict(sorted(responses.items()))
    return result
