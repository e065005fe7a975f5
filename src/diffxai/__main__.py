import sys

from diffxai.workflow.cli import main

sys.exit(main())
