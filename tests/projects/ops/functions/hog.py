def handler(context, event, callback):
    """Touches `mib` MiB (default 512): over a small memory_mb, the container is OOM-killed."""
    blocks = [b"\x01" * (16 * 1024 * 1024) for _ in range(int(event.get("mib", "512")) // 16)]
    return callback(None, f"allocated {len(blocks) * 16} MiB")
