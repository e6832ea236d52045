"""Run a command as the child of a subreaper that never reaps anything else, like a container
init that leaves orphans as zombies: `lazy_reaper.py ARGV...`. Orphans of the command's
descendants are reparented here and stay zombies once they die. SIGTERM and SIGINT are passed
on; the exit status is the command's."""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36

if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl: {os.strerror(ctypes.get_errno())}")
child = subprocess.Popen(sys.argv[1:])
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
sys.exit(child.wait())
