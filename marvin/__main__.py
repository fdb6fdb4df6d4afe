import sys

from marvin.cli import main

sys.exit(main())
