# Soak: backgrounds a grandchild through a shell; the token in its argv lets the soak look for it afterwards.
import subprocess
import sys


def handler(context, event, callback):
    token = "".join(c for c in str(event.get("token", "")) if c.isalnum() or c == "-")
    subprocess.Popen(f"{sys.executable} -c 'import time; time.sleep(30)' {token} &", shell=True)
    return callback(None, "grandchild started")
