"""build: C sources + board -> firmware ELF (SCons, arm-none-eabi-gcc); ELF -> size report (pyelftools)."""
from .boards import Board, Region, board_names, list_boards, load_board, print_boards
from .firmware import build
from .size import print_size_report, size_report

__all__ = ["Board", "Region", "board_names", "list_boards", "load_board", "print_boards", "build", "size_report",
           "print_size_report"]
