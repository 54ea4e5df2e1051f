"""`python -m tools.gauntlet`: the same as `tilltap gauntlet`."""

from tools.gauntlet.run import main

raise SystemExit(main())
