"""`python -I -m hoodyd.terminals.holder ...`: run a holder (`process.main`). The module name
is the one every layout has started holders with, so `hoodyd stop-terminals` and a program's
supervisord entry find holders of the previous layout and of this one alike."""

from __future__ import annotations

import sys

from hoodyd.terminals.holder.process import main

sys.exit(main())
