import sys

from plugin_api.cli import main

sys.exit(main())
