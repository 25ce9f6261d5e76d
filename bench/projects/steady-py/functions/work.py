# Steady-load handler (bench/steady.py, tests/test_prewarm.py): the SMS-webhook TwiML reply of
# `realistic`, after waiting `ms` milliseconds (query string, default 5, at most 2000) as a handler
# does while it calls an API or a database. The worker stays busy for that long, so concurrent
# requests need more workers; the CPU cost stays that of `realistic`.
import asyncio


def _wait_ms(event):
    raw = event.get("ms", "5")
    if isinstance(raw, list):
        raw = raw[-1]
    try:
        return min(max(float(raw), 0.0), 2000.0)
    except (TypeError, ValueError):
        return 5.0


async def handler(context, event, callback):
    await asyncio.sleep(_wait_ms(event) / 1000)
    twiml = Twilio.twiml.MessagingResponse()
    twiml.message(f"Thanks {event.get('From')}, we got: {event.get('Body')}")
    return callback(None, twiml)
