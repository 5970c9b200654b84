from clip_training.cli import main

raise SystemExit(main())
