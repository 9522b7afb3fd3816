from .child import main

raise SystemExit(main())
