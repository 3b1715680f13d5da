from expansion_scorer.cli import main

raise SystemExit(main())
