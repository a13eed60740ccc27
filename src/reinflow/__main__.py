import sys

from reinflow.cli import main

sys.exit(main())
