"""The page runs only its own code: security headers on every response.

- `Content-Security-Policy`: scripts, styles, images, fonts and requests from this server only,
  no inline script, no plugins, no framing, no <base> tricks. A value a page shows that someone
  else wrote (an imported index's source URL, a model id) can then never run as script, even
  where escaping were forgotten. The API docs pages set a policy of their own (their start-up
  script allowed by its hash: registry.web.docs), which this middleware keeps.
- `X-Frame-Options: DENY` (older browsers' framing rule), `X-Content-Type-Options: nosniff`
  (a JSON or PNG answer is never read as a script or a page), and `Referrer-Policy`
  (no address of this registry's pages leaks to the sites its pages link to).
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds HEADERS to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
