"""The front door's ceiling: a bare aiohttp app doing the handlers' work in-process.

    python -m bench.bare_app --port N

`GET /trivial` returns the same string as the bench functions; `POST /realistic` parses the same
form and builds the same TwiML with the same `twilio` package. No routing table, no event, no
worker, no logging: what is left is aiohttp itself on one event loop, the most the engine's own
front door (also aiohttp, also one loop) could do.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from twilio.twiml.messaging_response import MessagingResponse


async def trivial(request: web.Request) -> web.Response:
    return web.Response(text="This is fine")


async def realistic(request: web.Request) -> web.Response:
    form = await request.post()
    twiml = MessagingResponse()
    twiml.message(f"Thanks {form.get('From')}, we got: {form.get('Body')}")
    return web.Response(text=str(twiml), content_type="text/xml")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/trivial", trivial)
    app.router.add_post("/realistic", realistic)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
