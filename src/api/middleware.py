"""Pure ASGI middleware: request ids and body size limits (applied before any body is buffered)."""

from __future__ import annotations

import json
import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.api.problems import MEDIA_TYPE, PROBLEM_TYPES, problem_body

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accept a well-formed `X-Request-ID` or create one; bind it for every log line; echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((REQUEST_ID_HEADER, request_id.encode()))
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        await self.app(scope, receive, send_with_id)
        # Unbound only on success: after an unhandled error the 500 response and uvicorn's access and
        # "Exception in ASGI application" lines come from outside this call, and must carry the id.
        # uvicorn runs each request in its own task (a copied context), so nothing leaks to the next.
        structlog.contextvars.reset_contextvars(**tokens)


class BodySizeLimitMiddleware:
    """413 when `Content-Length` or the streamed body exceeds the limit, before the body is buffered.

    A body sent without a length (chunked) is counted as it streams; past the limit the app is told
    the client went away (it abandons the request: a truncated body is never taken for a whole
    one) and, whatever it answers, the client gets the 413: a body over its limit is 413 however
    it is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, scope)
            return
        received = 0
        too_large = False
        replaced = started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # As if the client had gone: the app abandons the request (a truncated body must
                    # never be taken for a whole one), and its answer is replaced by the 413.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def limited_send(message: Message) -> None:
            nonlocal replaced, started
            if too_large and not started:
                if message["type"] == "http.response.start" and not replaced:
                    replaced = True
                    await self._reject(send, scope)
                return  # the app's answer to a truncated body is not the client's
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, limited_send)

    async def _reject(self, send: Send, scope: Scope) -> None:
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(
            problem_body(
                PROBLEM_TYPES["payload-too-large"],
                f"request body exceeds the {self.max_bytes} byte limit",
                instance=scope.get("path"),
                request_id=request_id,
                code="payload_too_large",  # the member this answer had before problem+json
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
