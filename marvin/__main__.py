import sys

from marvin.frontends.cli import main

sys.exit(main())
