# Soak: a CPU loop past its (short, per-function) time limit.
def handler(context, event, callback):
    while True:
        pass
