import sys

from gmemtrace.cli import main

sys.exit(main())
