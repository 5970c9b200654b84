"""Loaded by the server under test (via PYTHONPATH): records every file opened and every outgoing
connection, once the test asks for it, into the file named by CLIP_AUDIT_LOG."""

import os
import sys

_log_path = os.environ.get("CLIP_AUDIT_LOG")

if _log_path:
    _log = open(_log_path, "a", buffering=1)

    def _hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            _log.write(f"open {os.fsdecode(args[0])}\n")
        elif event == "socket.connect":
            _log.write(f"connect {args[1]!r}\n")

    sys.addaudithook(_hook)
