import sys

from crosspose.cli import main

sys.exit(main())
