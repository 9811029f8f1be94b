import signal
import sys

from .cli import main, on_terminate

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_terminate)  # here only: not in worker processes, nor where main() is called
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # not under nohup
        signal.signal(signal.SIGHUP, on_terminate)
    sys.exit(main())
