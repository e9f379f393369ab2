"""`python -m mmseq.cli`: the `mmseq` command."""

import sys

from mmseq.cli import main

sys.exit(main())
