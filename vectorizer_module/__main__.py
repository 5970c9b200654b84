from vectorizer_module.cli import main

raise SystemExit(main())
