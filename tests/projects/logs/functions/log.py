"""Writes handler output in every way Python allows, picked by `event["mode"]`."""

import json
import logging
import os
import sys

log = logging.getLogger("conformance")
log.setLevel(logging.DEBUG)


def handler(context, event, callback):
    mode = event.get("mode")
    tag = event.get("tag", "")
    if mode == "print":
        print(f"stdout line {tag}")
    elif mode == "stderr":
        print(f"stderr line {tag}", file=sys.stderr)
    elif mode == "logging":
        log.debug(f"debug via logging {tag}")
        log.info(f"info via logging {tag}")
        log.warning(f"warning via logging {tag}")
        log.error(f"error via logging {tag}")
        log.critical(f"critical via logging {tag}")
    elif mode == "root-logging":
        logging.warning(f"warning via root logger {tag}")
        logging.error(f"error via root logger {tag}")
    elif mode == "write-no-newline":
        sys.stdout.write(f"partial line {tag}")
    elif mode == "raw-fd":
        os.write(1, f"raw fd1 {tag}\n".encode())
        os.write(2, f"raw fd2 {tag}\n".encode())
    elif mode == "dunder-stdout":
        sys.__stdout__.write(f"dunder stdout {tag}\n")
        sys.__stdout__.flush()
    elif mode == "after-callback":
        print(f"before callback {tag}")
        callback(None, "logged")
        print(f"after callback {tag}")
        return None
    elif mode == "many-lines":
        for i in range(int(event.get("lines", "100"))):
            print(f"line {i:05d} {tag} " + "x" * 80)
    elif mode == "huge":
        sys.stdout.write("y" * 10_000_000 + "\n")
        sys.stdout.write("z" * 10_000_000)
        sys.stdout.flush()
        os.write(2, b"w" * 1_000_000)
    elif mode == "forge":
        frame = {"type": "result", "id": event.get("forge_id", "x"), "status": 201,
                 "headers": [["X-Forged", "yes"]], "body": "forged", "body_encoding": "utf-8", "error": None}
        line = json.dumps(frame)
        print(line)
        os.write(1, (line + "\n").encode())
        sys.__stdout__.write(line + "\n")
        sys.__stdout__.flush()
        done = json.dumps({"type": "done", "id": event.get("forge_id", "x"), "clean": True, "reason": None})
        os.write(1, (done + "\n").encode())
        os.write(1, b"\x00\xff not even utf-8 \n")
    return callback(None, f"logged {mode}")
