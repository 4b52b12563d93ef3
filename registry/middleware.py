"""Pure ASGI middleware of the API: bounded request bodies, and HEAD on every GET."""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api_errors import error_response


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class MaxBodySize:
    """Refuses request bodies over `limit` bytes with 413 and reads no further.

    A Content-Length over the limit is answered before the app runs (nothing is read). A body
    without one (chunked) is counted as the app reads it, and reading past the limit raises
    BodyTooLarge (413; FastAPI passes HTTP exceptions raised while it reads a body through)
    instead of handing on more bytes. Endpoints that need a token check it before they read the
    body (registry.auth.dependency.TokenFirstRoute), so an unauthenticated upload is answered
    401 having read nothing.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GET and HEAD bodies are never read: no need to look.
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = error_response(
                413, "request_too_large", f"request body larger than {self.limit} bytes"
            )
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


class HeadAsGet:
    """HEAD on any GET route: the app answers the same request as a GET, and the body is
    dropped (the headers, Content-Length included, are the GET's)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
