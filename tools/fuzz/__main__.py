"""`python -m tools.fuzz`: the same as `tilltap fuzz`."""

from tools.fuzz.campaign import main

raise SystemExit(main())
