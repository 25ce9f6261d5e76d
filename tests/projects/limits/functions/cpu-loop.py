"""Spins on the CPU and never calls back."""

import socket


def handler(context, event, callback):
    print(f"CONTAINER {socket.gethostname()}", flush=True)
    n = 0
    while True:
        n += 1
