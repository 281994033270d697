"""build: C sources + board -> firmware ELF (SCons, arm-none-eabi-gcc); ELF -> size report (pyelftools)."""

from mcu_mot.boards import Board, Region, board_names, list_boards, load_board
from mcu_mot.fwbuild.firmware import build
from mcu_mot.fwbuild.size import print_size_report, size_report

__all__ = ["Board", "Region", "board_names", "list_boards", "load_board", "build", "size_report", "print_size_report"]
