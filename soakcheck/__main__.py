import sys

from soakcheck.cli import main

sys.exit(main())
