import signal
import sys

from .cli import main, on_terminate

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_terminate)  # here only: not in worker processes, nor where main() is called
    sys.exit(main())
