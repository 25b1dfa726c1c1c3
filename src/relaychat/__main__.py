import sys

from relaychat.cli import main

sys.exit(main())
