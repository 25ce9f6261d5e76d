def handler(context, event, callback):
    """Touches far more memory than the worker's limit allows."""
    blocks = []
    for _ in range(int(event.get("mib", "1024")) // 64):
        blocks.append(b"\x01" * (64 * 1024 * 1024))
    return callback(None, f"allocated {len(blocks) * 64} MiB")
