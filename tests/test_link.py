"""The link recovers instead of giving up (issue 15): a 1 % byte error rate is invisible to the
user, any byte stream into the UART leaves the device answering, a closed socket is reopened, a
device reset between INVOKE and GET_OUTPUT never yields outputs that are not ours."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from faultproxy import FaultProxy, Faults, faults_at
from harness import needs_qemu_tools

from mcu_mot.device import protocol as P
from mcu_mot.device.client import DeviceClient
from mcu_mot.device.host import HostDevice, build_host_firmware
from mcu_mot.device.transport import DeviceError
from mcu_mot.errors import MotError

MB = 1 << 20


@pytest.fixture(scope="module")
def link_model(tmp_path_factory):
    """int8, 16x16x3 input (768 B: several chunks), a 16x16x4 map (1 kB: several reads) and a head."""
    import harness

    return harness.two_output_model(tmp_path_factory.mktemp("link"), "link", seed=5)


@pytest.fixture(scope="module")
def fw(link_model):
    return build_host_firmware(link_model)


def _inputs(n, seed=0, shape=(16, 16, 3)):
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape)).astype(np.int8)


def _check(outs, refs, i):
    for o, r in zip(outs, refs):
        np.testing.assert_array_equal(o, r[i])


def flood(kind: str, size: int, seed: int = 0) -> bytes:
    """`size` bytes of: random bytes, non-zero bytes (no delimiter at all), or well-formed frames
    (valid COBS and CRC) of random types, seqs and payloads."""
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "nonzero":
        return bytes(b % 255 + 1 for b in rng.randbytes(size))
    out = bytearray()
    while len(out) < size:
        n = rng.choice([0, rng.randrange(16), rng.randrange(P.MAX_PAYLOAD + 1)])
        out += P.encode_frame(rng.randrange(256), rng.randrange(256), rng.randbytes(n))
    return bytes(out[:size])


def _raw(c: DeviceClient, data: bytes) -> None:
    """Bytes straight onto the client's line (as Transport.write_raw; kept to the serial object
    so that the same test runs against the code before issue 15)."""
    c.transport.ser.write(data)
    c.transport.ser.flush()


def _answers_after_flood(c: DeviceClient, kind: str, size: int, x, refs, drain_deadline: float):
    """Flood the UART through the client's own connection (without reading: the device's replies
    pile up), then: INFO answered (after the device read the flood), again within a second, the
    right outputs, and the device's byte counter shows the whole flood arrived."""
    before = c.stats().get("rx_bytes", 0)
    _raw(c, flood(kind, size, seed=len(kind)))
    saved = getattr(c.transport, "deadline", None)
    c.transport.deadline = drain_deadline
    try:
        assert c.info(refresh=True).layers > 0  # waits out the flood, never gives up early
    finally:
        c.transport.deadline = saved
    t = time.monotonic()
    info = P.parse_info(c.transport.request(P.INFO, deadline=t + 1.0))
    assert info.layers == c.info().layers and time.monotonic() - t < 1.0
    c.set_input(0, x[0])
    c.invoke()
    _check([c.get_output(k) for k in range(len(refs))], refs, 0)
    st = c.stats()
    assert st["rx_bytes"] - before >= size  # the device read every byte of it
    if kind == "nonzero":
        assert st["overlong"] >= 1


# ---------------------------------------------------------------- the host build


def test_one_percent_faults_are_invisible_on_the_host_build(fw, link_model):
    """1 % of the bytes dropped, corrupted or duplicated both ways (and chunks delayed): every
    inference gives the right outputs, and the device runs each INVOKE exactly once."""
    from mcu_mot.device.simulator import load

    x = _inputs(6, seed=1)
    refs = load(link_model).run(x)
    f = faults_at(0.01)
    with HostDevice(fw) as dev:
        with FaultProxy(dev.port, seed=3, to_device=f, to_host=f) as proxy:
            with DeviceClient(proxy.url, timeout=1.0) as c:
                outs = c.run(x)
                for o, r in zip(outs, refs):
                    np.testing.assert_array_equal(o, r)
                resent = c.transport.resent
            injected = proxy.injected()
        with DeviceClient(dev.url) as direct:
            st = direct.stats()
    assert injected > 20 and resent > 0  # the line really was bad
    assert st["invokes"] == len(x) and st["corrupt"] > 0


@pytest.mark.parametrize("kind", ["random", "nonzero", "frames"])
def test_a_megabyte_of_anything_into_the_host_build(fw, link_model, kind):
    from mcu_mot.device.simulator import load

    x = _inputs(1, seed=2)
    refs = load(link_model).run(x)
    with HostDevice(fw) as dev, DeviceClient(dev.url, timeout=1.0) as c:
        _answers_after_flood(c, kind, MB, x, refs, drain_deadline=60.0)
        assert dev.proc.poll() is None


def test_closed_socket_is_reopened_mid_run(fw, link_model):
    """The device's socket closes (as an emulator's does) during a batch, several times: the
    transport reopens it and resends, outputs stay right, nothing runs twice."""
    from mcu_mot.device.simulator import load

    x = _inputs(12, seed=4)
    refs = load(link_model).run(x)
    with HostDevice(fw) as dev:
        with FaultProxy(dev.port) as proxy:
            stop = threading.Event()

            def cutter():
                while not stop.wait(0.05):
                    proxy.cut()

            with DeviceClient(proxy.url, timeout=0.5) as c:
                _check([o[0] for o in c.run(x[:1])], refs, 0)
                t = threading.Thread(target=cutter, daemon=True)
                t.start()
                try:
                    outs = c.run(x[1:])
                finally:
                    stop.set()
                    t.join()
                for o, r in zip(outs, refs):
                    np.testing.assert_array_equal(o, r[1:])
                assert c.transport.reconnects >= 1 and proxy.cuts >= 1
        with DeviceClient(dev.url) as direct:
            assert direct.stats()["invokes"] == len(x)


def test_outputs_are_refused_until_an_invoke_ran_and_status_reports_the_input(fw):
    """A device that was reset (or never ran) refuses GET_OUTPUT instead of sending arena bytes
    that are not an output; STATUS says how much of an input it holds, so a client resumes."""
    x = _inputs(1)[0]
    with HostDevice(fw) as dev, DeviceClient(dev.url) as c:
        with pytest.raises(DeviceError) as e:
            c.get_output(0)
        assert e.value.code == P.ERR_NOT_FRESH
        st = c.status()
        assert (st.invokes, st.invoked, st.fresh, st.outputs_valid, st.received) == (0, False, False, False, [0])
        c.request(P.SET_INPUT, P.set_input_payload(0, 0, x.tobytes()[:100]))
        assert c.status().received == [100]
        c.set_input(0, x)
        st = c.status()
        assert st.fresh and st.received == [768] and not st.outputs_valid
        ticks, ran = c.invoke()
        seq = c.transport.last_seq
        st = c.status()
        assert st.invoked and st.outputs_valid and not st.fresh and st.received == [0]
        assert (st.invokes, st.last_invoke_seq, st.last_ticks, st.last_layers) == (1, seq, ticks, ran)
        c.get_output(1)
        c.request(P.SET_INPUT, P.set_input_payload(0, 0, b"\x01"))  # the arena changes: outputs gone
        with pytest.raises(DeviceError):
            c.get_output(1)


def test_device_reset_between_invoke_and_output_redoes_the_sample(fw, link_model):
    """The device restarts (same port) after the INVOKE: the client reconnects, the device refuses
    the outputs it no longer has, and run_sample redoes input + INVOKE: right outputs."""
    from mcu_mot.device.simulator import load

    x = _inputs(1, seed=6)
    refs = load(link_model).run(x)
    dev = HostDevice(fw).start()
    port = dev.port
    try:
        with DeviceClient(dev.url, timeout=0.5) as c:
            real_invoke = c.invoke

            def invoke_then_reset(*a, **kw):
                r = real_invoke(*a, **kw)
                if c.redone == 0:
                    dev.stop()
                    dev.port = port
                    dev.start()
                return r

            c.invoke = invoke_then_reset
            _check(c.run_sample([x[0]])[1], refs, 0)
            assert c.redone == 1 and c.transport.reconnects >= 1
    finally:
        dev.stop()


def test_invoke_whose_replies_are_all_lost_is_resolved_by_status(fw, link_model):
    """Every reply to an INVOKE is lost until the client's deadline: it asks STATUS, learns that
    its INVOKE ran (its seq, input consumed) and uses that result instead of failing or
    running it again."""
    from mcu_mot.device.simulator import load

    x = _inputs(1, seed=10)
    refs = load(link_model).run(x)
    back = Faults()
    with HostDevice(fw) as dev, FaultProxy(dev.port, to_device=Faults(), to_host=back) as proxy:
        with DeviceClient(proxy.url, timeout=0.2, deadline=1.0, invoke_timeout=0.2) as c:
            c.set_input(0, x[0])
            back.drop = 1.0  # the line to the host goes dead ...
            timer = threading.Timer(1.6, lambda: setattr(back, "drop", 0.0))  # ... for 1.6 s
            timer.start()
            ticks, ran = c.invoke()
            timer.join()
            assert c._has_status is True  # the answer came from STATUS
            assert ran == c.info().layers and ticks > 0
            _check([c.get_output(k) for k in range(len(refs))], refs, 0)
            assert c.status().invokes == 1 and proxy.down.counters.dropped > 0


def test_a_dead_line_still_fails_in_one_line_within_the_deadline(fw):
    """Recovery is bounded: at 40 % byte errors a request gives up with one clear line."""
    f = faults_at(0.4)
    with HostDevice(fw) as dev, FaultProxy(dev.port, seed=9, to_device=f, to_host=f) as proxy:
        t = time.monotonic()
        with pytest.raises(MotError) as e:
            with DeviceClient(proxy.url, timeout=0.2, retries=3, deadline=2.0) as c:
                c.set_input(0, _inputs(1)[0])
        assert "\n" not in str(e.value) and time.monotonic() - t < 30


# ---------------------------------------------------------------- QEMU


def _qemu_build(tmp_path, link_model):
    from mcu_mot.fwbuild import build

    return build(link_model, "qemu-mps2-an386", tmp_path / "build-an386")


@needs_qemu_tools
@pytest.mark.qemu
def test_qemu_survives_a_delimiter_free_flood_and_a_quick_reconnect(tmp_path, link_model):
    """QEMU reads its UART socket at some 35 kB/s. After 192 kB without a 0x00 the client waits
    the flood out (it used to give up after 5 tries), the device answers within a second and
    computes right; a client that closes right after flooding leaves no backlog behind (the
    socket is reset), so the next connection is answered at once."""
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.device.simulator import load

    x = _inputs(1, seed=7)
    refs = load(link_model).run(x)
    report = _qemu_build(tmp_path, link_model)
    with QemuInstance("qemu-mps2-an386", report["elf"]) as q:
        with DeviceClient(q.url, timeout=1.0) as c:
            _answers_after_flood(c, "nonzero", 192 * 1024, x, refs, drain_deadline=60.0)
            _raw(c, flood("nonzero", 192 * 1024))
        with DeviceClient(q.url, timeout=1.0, retries=3, deadline=3.0) as c2:  # 192 kB would take 6 s
            assert c2.info().layers > 0
            _check(c2.run_sample([x[0]])[1], refs, 0)


@needs_qemu_tools
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "nonzero", "frames"])
def test_qemu_survives_a_megabyte_of_anything(tmp_path, link_model, kind):
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.device.simulator import load

    x = _inputs(1, seed=8)
    refs = load(link_model).run(x)
    report = _qemu_build(tmp_path, link_model)
    with QemuInstance("qemu-mps2-an386", report["elf"]) as q, DeviceClient(q.url, timeout=1.0) as c:
        _answers_after_flood(c, kind, MB, x, refs, drain_deadline=120.0)
        assert q.alive()


@needs_qemu_tools
@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_one_percent_faults_and_cut_connections(tmp_path, link_model):
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.device.simulator import load

    x = _inputs(6, seed=9)
    refs = load(link_model).run(x)
    report = _qemu_build(tmp_path, link_model)
    f = faults_at(0.01)
    with QemuInstance("qemu-mps2-an386", report["elf"]) as q:
        with FaultProxy(q.port, seed=5, to_device=f, to_host=f) as proxy:
            with DeviceClient(proxy.url, timeout=1.0) as c:
                for i in range(len(x)):
                    if i % 2:
                        proxy.cut()
                    _check(c.run_sample([x[i]])[1], refs, i)
                assert c.transport.reconnects >= 1
        with DeviceClient(q.url, timeout=2.0) as direct:
            assert direct.stats()["invokes"] == len(x)
