# Complete Execution with Asynchronous HTTP Request.
import asyncio
import sys


async def handler(context, event, callback):
    # Fetch the already initialized Twilio REST client
    client = context.get_twilio_client()

    # Determine message details from the incoming event, with fallback values
    from_ = event.get("From") or "+15095550100"
    to = event.get("To") or "+15105550101"
    body = event.get("Body") or "Ahoy, World!"

    try:
        result = await asyncio.to_thread(client.messages.create, to=to, from_=from_, body=body)
    except Exception as error:
        print(error, file=sys.stderr)
        # Callback is also used in the except clause to end execution on errors
        return callback(error)
    print("Created message using callback")
    print(result.sid)
    # Callback is placed after the awaited request succeeded
    return callback()

    # If you were to call callback() before awaiting the request, instead, then the
    # invocation would end before your API request to create a message could complete.
