"""Targets: where a firmware build runs, behind one interface (in the manner of microTVM's
Project API). Every command and flow gets its device here and nowhere else.

    with QemuTarget("build/qemu-mps2-an386").connect(timeout=10.0) as dev:   # a DeviceClient
        dev.check_model(...); dev.run(x)

A Target goes through four steps (each one runs the ones before it when they have not run):

    prepare()         read the build: BUILD_DIR/report.json and the firmware.elf it describes
                      (hash-checked), and the board; HostTarget compiles the host firmware
    launch()          make the image run: start QEMU (QemuTarget), flash the board with its
                      board file's tool (SerialTarget), start the executable (HostTarget)
    open_transport()  a DeviceClient on the target's serial link (closed by close())
    close()           close the clients and stop what launch() started

`connect(**client_options)` is all four as a context manager; a Target is also a context manager
(prepare and launch on entry, close on exit). `target_for(build_dir, port=...)` picks the Target a
command talks to.

- QemuTarget: qemu-system-arm for an emulated board, the UART a TCP server on 127.0.0.1
  (device/qemu.py: the one place the emulator's command line is built and the emulator started).
  attach=True uses the emulator `mcu-mot flash` left running for the build folder, if any;
  detached=True starts one that outlives this process and records it there (`mcu-mot flash`).
- SerialTarget: a device on a serial port (/dev/ttyACM0, COM3, or any pyserial URL such as
  socket://HOST:PORT). flash=True programs the build's image first with the board file's flash
  tool (openocd, pyocd, picotool: device/flasher.py); otherwise it attaches to what runs there.
- HostTarget: the firmware built for this machine (device/host.py), speaking the same protocol on
  a TCP port of 127.0.0.1: a target in seconds, without a cross compiler or QEMU.
"""

from __future__ import annotations

import abc
import contextlib
from pathlib import Path

from mcu_mot.boards import load_board
from mcu_mot.codegen.compile import model_digest
from mcu_mot.device import session
from mcu_mot.device.client import DeviceClient
from mcu_mot.device.flasher import flash_hardware
from mcu_mot.device.host import HostDevice, build_host_firmware
from mcu_mot.device.qemu import QemuInstance
from mcu_mot.device.session import build_report, firmware_image
from mcu_mot.device.transport import normalize_port
from mcu_mot.errors import MotError


class Target(abc.ABC):
    """One device that runs a firmware build. Subclasses implement `_launch`, `_stop` and `url`."""

    #: a word for messages: "qemu", "serial", "host"
    kind = "?"

    def __init__(self, build_dir=None, *, board=None, elf=None):
        self.build_dir = Path(build_dir) if build_dir is not None else None
        self.board = None
        if board is not None:
            self.board = load_board(board)
        self.elf = Path(elf) if elf is not None else None
        self.report: dict | None = None
        self._prepared = False
        self._launched = False
        self._clients: list = []

    # ---- the four steps
    def prepare(self) -> "Target":
        """Read and check the build (BUILD_DIR/report.json, the image it describes, the board)."""
        if self._prepared:
            return self
        if self.build_dir is not None:
            self.report = build_report(self.build_dir)
            if self.board is None:
                self.board = load_board(self.report["board"])
            if self.elf is None:
                self.elf = firmware_image(self.build_dir, self.report)
        self._prepare()
        self._prepared = True
        return self

    def launch(self) -> "Target":
        """Make the image run on the device (flash it, or start the emulator or the executable)."""
        if not self._launched:
            self.prepare()
            self._launch()
            self._launched = True
        return self

    def open_transport(self, *, timeout: float = 1.0, **options):
        """A DeviceClient on this target's serial link (options: those of DeviceClient)."""
        self.launch()
        options.setdefault("baudrate", self.baudrate)
        client = DeviceClient(self.url, timeout=timeout, **options)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every transport opened here and stop what launch() started."""
        clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        if self._launched:
            self._launched = False
            self._stop()

    @contextlib.contextmanager
    def connect(self, **options):
        """prepare, launch, open_transport; close at the end: `with target.connect() as dev:`."""
        try:
            yield self.open_transport(**options)
        finally:
            self.close()

    # ---- what subclasses provide
    def _prepare(self) -> None:
        """More preparation after the build was read (default: nothing)."""

    @abc.abstractmethod
    def _launch(self) -> None: ...

    def _stop(self) -> None:
        """Undo _launch (default: nothing to stop)."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The serial link, as pyserial opens it (valid after launch)."""

    @property
    def baudrate(self) -> int:
        uart = getattr(self.board, "uart", None) or {}
        return int(uart.get("baud", 115200))

    @property
    def model_sha256(self) -> str | None:
        """The SHA-256 of the model the build holds (from report.json), if known."""
        return (self.report or {}).get("model_sha256")

    @property
    def name(self) -> str:
        return self.board.name if self.board is not None else str(self.url)

    def __enter__(self) -> "Target":
        try:
            return self.launch()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.build_dir or self.elf or ""
        return f"{type(self).__name__}({str(where)!r}, board={getattr(self.board, 'name', None)!r})"


class QemuTarget(Target):
    """An emulated board: qemu-system-arm running the image, its UART on a TCP port.

    attach: use the emulator `mcu-mot flash` left running for build_dir (device.json), if any.
    detached: start an emulator that outlives this process and record it in build_dir (close()
    then leaves it running; `mcu-mot flash --stop` / stop_emulator ends it)."""

    kind = "qemu"

    def __init__(
        self,
        build_dir=None,
        *,
        board=None,
        elf=None,
        attach: bool = False,
        detached: bool = False,
        start_timeout: float = 20.0,
        extra_args=(),
    ):
        super().__init__(build_dir, board=board, elf=elf)
        if detached and self.build_dir is None:
            raise MotError("a detached emulator is recorded in its build folder: give one")
        self.attach = attach
        self.detached = detached
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.instance = None  # the QemuInstance this target started
        self.state: dict | None = None  # the detached emulator's record (pid, port, board, elf)
        self._url: str | None = None

    def _prepare(self) -> None:
        if self.board is None or self.elf is None:
            raise MotError("a QEMU target needs a build folder, or a board and an image")
        if not self.board.emulated:
            raise MotError(
                f"board '{self.board.name}' is not emulated (flash method: {self.board.flash.get('method')})"
            )

    def _launch(self) -> None:
        if self.attach and self.build_dir is not None:
            state = session.running_emulator(self.build_dir)
            if state is not None:
                self.state, self._url = state, state["port"]
                return
        if self.detached:
            session.stop_emulator(self.build_dir)
            elf = self.elf.resolve()  # device.json names it: the pid check compares it
            q = QemuInstance(
                self.board,
                elf,
                start_timeout=self.start_timeout,
                extra_args=self.extra_args,
                log_path=self.build_dir / "qemu.log",
                detached=True,
            ).start()
            self.state = {"pid": q.proc.pid, "port": q.url, "board": self.board.name, "elf": str(elf)}
            session.save_emulator(self.build_dir, self.state)
            self._url = q.url
            q.release()
            return
        self.instance = QemuInstance(
            self.board, self.elf, start_timeout=self.start_timeout, extra_args=self.extra_args
        ).start()
        self._url = self.instance.url

    def _stop(self) -> None:
        q, self.instance = self.instance, None
        if q is not None:
            q.stop()

    @property
    def port(self) -> int | None:
        """The emulator's UART as a TCP port number of 127.0.0.1."""
        return int(self._url.rsplit(":", 1)[1]) if self._url else None

    @property
    def url(self) -> str:
        if self._url is None:
            raise MotError("the emulator is not running: launch the target first")
        return self._url


class SerialTarget(Target):
    """A device on a serial port. flash=True programs the build's image first (the board file's
    flash tool), else the target attaches to whatever runs there. port=None: flash only."""

    kind = "serial"

    def __init__(
        self,
        port: str | None,
        build_dir=None,
        *,
        board=None,
        elf=None,
        flash: bool = False,
        flash_timeout: float = 120.0,
    ):
        super().__init__(build_dir, board=board, elf=elf)
        if not port and not flash:
            raise MotError("a serial target needs a port (e.g. /dev/ttyACM0, COM3, socket://HOST:PORT)")
        self.port = str(port) if port else None
        self.flash = flash
        self.flash_timeout = flash_timeout
        self.flashed_with: str | None = None  # the flash command that ran

    def _prepare(self) -> None:
        if self.flash:
            if self.board is None or self.elf is None:
                raise MotError("flashing needs a build folder (or a board and an image)")
            if self.board.emulated:
                raise MotError(f"board '{self.board.name}' is emulated: QEMU runs it (no flash tool, no port)")

    def _launch(self) -> None:
        if self.flash:
            self.flashed_with = flash_hardware(self.board, self.elf, timeout=self.flash_timeout)

    @property
    def url(self) -> str:
        if self.port is None:
            raise MotError(f"no port to talk to {self.name} on: pass --port")
        return normalize_port(self.port)


class HostTarget(Target):
    """The firmware built for this machine (device/host.py) from a .tflite model, or an executable
    built before; it serves the protocol on a TCP port of 127.0.0.1."""

    kind = "host"

    def __init__(self, model_or_exe, *, port: int = 0):
        super().__init__()
        self.source = Path(model_or_exe)
        self.exe: Path | None = None
        self.listen_port = port
        self.device = None

    def _prepare(self) -> None:
        if self.source.suffix == ".tflite":
            self.exe = build_host_firmware(self.source)
            self.report = {
                "board": "host",
                "model": self.source.name,
                "model_sha256": model_digest(self.source.read_bytes()),
            }
        elif self.source.is_file():
            self.exe = self.source
        else:
            raise MotError(f"host firmware not found: {self.source}")

    def _launch(self) -> None:
        self.device = HostDevice(self.exe, port=self.listen_port).start()

    def _stop(self) -> None:
        d, self.device = self.device, None
        if d is not None:
            d.stop()

    @property
    def port(self) -> int | None:
        return self.device.port if self.device is not None else None

    @property
    def url(self) -> str:
        if self.device is None:
            raise MotError("the host firmware is not running: launch the target first")
        return self.device.url

    @property
    def name(self) -> str:
        return "host"


def target_for(build_dir=None, *, port: str | None = None, board=None, flash: bool = False) -> Target:
    """The target a command talks to.

    port: a SerialTarget on it (flash=True: program the build's image first when its board is
    real hardware; an emulated board's build on a port is attached to, never flashed); else the
    build folder's emulated board: the emulator `mcu-mot flash` left running, or one started for
    this target's lifetime. A real board without a port is a one-line error."""
    if port:
        b = load_board(board) if board is not None else None
        if b is None and build_dir is not None and flash:
            b = load_board(build_report(build_dir)["board"])
        return SerialTarget(port, build_dir, board=b, flash=flash and b is not None and not b.emulated)
    if build_dir is None:
        raise MotError("name a --port, or a build directory whose board is emulated")
    b = load_board(board if board is not None else build_report(build_dir)["board"])
    if not b.emulated:
        raise MotError(f"board '{b.name}' is real hardware: flash it and pass --port")
    return QemuTarget(build_dir, board=b, attach=True)


def flash_target(build_dir, *, port: str | None = None) -> Target:
    """What `mcu-mot flash BUILD_DIR` does: an emulated board's emulator started detached (it runs
    until `--stop`), a real board programmed with its flash tool (and, with `port`, checked to
    answer there)."""
    b = load_board(build_report(build_dir)["board"])
    if b.emulated:
        if port:
            raise MotError(f"board '{b.name}' is emulated: flash starts QEMU with its own UART port (no --port)")
        return QemuTarget(build_dir, board=b, detached=True)
    return SerialTarget(port, build_dir, board=b, flash=True)
