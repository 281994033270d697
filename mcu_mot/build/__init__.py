"""build: C sources + board -> firmware ELF (SCons, arm-none-eabi-gcc); ELF -> size report (pyelftools)."""
from .boards import Board, Region, board_names, list_boards, load_board, print_boards


def build(*args, **kwargs):
    from .build import build as _build
    return _build(*args, **kwargs)


def size_report(*args, **kwargs):
    from .size import size_report as _size_report
    return _size_report(*args, **kwargs)


def print_size_report(*args, **kwargs):
    from .size import print_size_report as _print
    return _print(*args, **kwargs)


__all__ = ["Board", "Region", "board_names", "list_boards", "load_board", "print_boards", "build", "size_report",
           "print_size_report"]
