"""Background emulator process: ``python -m etl_local.server --port N``.

The Lambda patch must live in the process that serves moto (Step Functions invokes Lambda
inside it), so a persistent emulator is started through this entrypoint, never plain
``moto_server``. It writes ``.etl-local/emulator.json`` (port, pid) once it is serving; the
handlers' logs go to this process's stdout (``.etl-local/server.log`` when started by the CLI).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from etl_local import state
from etl_local.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl_local.server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = Emulator(port=args.port).start()
    state.write({"endpoint": emulator.endpoint, "port": emulator.port, "pid": os.getpid()})
    print(f"etl-local emulator serving on {emulator.endpoint} (pid {os.getpid()})", flush=True)
    try:
        stop.wait()
    finally:
        print("etl-local emulator stopping", flush=True)
        current = state.read() or {}
        if current.get("pid") == os.getpid():
            state.clear()
        emulator.stop()
        print("etl-local emulator stopped", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything the emulator held was in memory. Do not wait for worker threads that moto or
    # the handlers' thread pools may still park (interpreter shutdown joins them).
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
