"""``python -m serving ...``: the ``soz`` command without its console script.

(Not ``python -m serving.cli``: run as ``__main__``, that module would be a second copy of
``serving.cli`` whose command registry the subcommand modules never fill.)
"""

import sys

from serving.cli import main

sys.exit(main())
