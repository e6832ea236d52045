from hoodyd.cli import main

raise SystemExit(main())
