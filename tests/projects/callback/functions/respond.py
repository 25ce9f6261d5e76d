"""One sync handler, many ways to call back, picked by `event["mode"]`."""

import os
import signal
import socket
import threading

IDENTITY = f"{socket.gethostname()}:{os.getpid()}"


class QuotaError(Exception):
    pass


def twiml(kind):
    if kind == "messaging":
        response = Twilio.twiml.MessagingResponse()
        response.message("Hello, World!")
    elif kind == "voice":
        response = Twilio.twiml.VoiceResponse()
        response.say("Ahoy", voice="alice")
        response.play("https://demo.twilio.com/docs/classic.mp3")
    else:
        response = Twilio.twiml.FaxResponse()
        response.receive(action="/fax/received")
    return response


def handler(context, event, callback):
    mode = event.get("mode")
    n = int(event.get("n", "0"))
    if mode == "none":
        return callback()
    if mode == "null":
        return callback(None)
    if mode == "null-null":
        return callback(None, None)
    if mode == "text":
        return callback(None, "This is fine")
    if mode == "unicode":
        return callback(None, "héllo ✓ 🎉")
    if mode == "dict":
        return callback(None, {"a": 1, "b": [1, 2], "c": None, "d": "ü"})
    if mode == "list":
        return callback(None, [1, "two", None, {"x": True}])
    if mode == "true":
        return callback(None, True)
    if mode == "false":
        return callback(None, False)
    if mode == "number":
        return callback(None, 42)
    if mode == "float":
        return callback(None, 1.5)
    if mode == "zero":
        return callback(None, 0)
    if mode.startswith("twiml-"):
        return callback(None, twiml(mode.removeprefix("twiml-")))
    if mode == "bytes":
        return callback(None, bytes(range(256)) * 4)
    if mode == "bytearray":
        return callback(None, bytearray(b"\x00\xff\r\n\x1b" * 3))
    if mode == "error-string":
        return callback("Something went very, very wrong.")
    if mode == "error-exception":
        return callback(ValueError("bad value"))
    if mode == "error-raised-exception":
        try:
            raise ValueError("bad value")
        except ValueError as error:
            return callback(error)
    if mode == "error-custom":
        return callback(QuotaError("over quota"))
    if mode == "error-dict":
        return callback({"code": 20404, "detail": "not found"})
    if mode == "error-list":
        return callback(["a", 1])
    if mode == "error-number":
        return callback(42)
    if mode == "falsy-error-empty-string":
        return callback("", "falsy error means success")
    if mode == "falsy-error-zero":
        return callback(0, "falsy error means success")
    if mode == "falsy-error-false":
        return callback(False, "falsy error means success")
    if mode == "raise":
        raise RuntimeError("handler blew up")
    if mode == "first-wins":
        callback(None, "first")
        callback(None, "second")
        return None
    if mode == "first-wins-error":
        callback(None, "first")
        return callback("late error")
    if mode == "error-then-success":
        callback("first error")
        return callback(None, "late success")
    if mode == "raise-after-callback":
        callback(None, "done")
        raise RuntimeError("raised after the callback")
    if mode == "timer-callback":
        threading.Timer(0.2, callback, args=(None, "from a timer thread")).start()
        return None
    if mode == "thread-raises":
        def boom():
            raise RuntimeError("uncaught in a thread")
        threading.Thread(target=boom).start()
        return None
    if mode == "whoami":
        return callback(None, IDENTITY)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "exit":
        os._exit(3)
    if mode == "big-text":
        return callback(None, "x" * n)
    if mode == "big-multibyte":
        return callback(None, "é" * n)
    if mode == "big-bytes":
        return callback(None, b"\x00" * n)
    if mode == "big-json":
        return callback(None, {"pad": "x" * n})
    if mode == "big-response":
        return callback(None, Twilio.Response().set_body("x" * n))
    return callback(f"unknown mode {mode!r}")
