import sys

from dimattn.cli import main

sys.exit(main())
