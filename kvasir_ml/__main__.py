import sys

from kvasir_ml.cli import main

sys.exit(main())
