import sys

from mcu_mot.cli import main

sys.exit(main())
