# Soak: allocates (and touches) memory until the worker's limit stops it.
def handler(context, event, callback):
    hoard = []
    while True:
        hoard.append(bytearray(32 * 1024 * 1024))
