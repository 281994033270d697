"""Link soak: full inference round trips (SET_INPUT, INVOKE, GET_OUTPUT) through a proxy that
damages the serial link at a given byte error rate, each output compared with the host
simulation. Per target and rate: requests, right replies, clear errors (one-line MotError),
wrong replies accepted (the worst failure), hangs (a request still running after --hang-after
seconds), other failures (anything but a one-line MotError), and INVOKEs the device ran beyond
those the host sent (a request executed twice).

A byte error rate r drops, corrupts and duplicates r/3 of the bytes each; besides, a fraction
r of the chunks read is delayed up to 50 ms and r/10 of them is sent twice
(mcu_mot.device.faultproxy.faults_at).

    .venv/bin/python -m bench.link_soak --rates 0.1 1 5 --seconds 120 600 300 --target host qemu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np


def default_model(cache: Path) -> Path:
    """A small image classifier (32x32x3 int8 input: 3 kB, i.e. several SET_INPUT chunks), made once."""
    path = cache / "link_soak_model.tflite"
    if path.is_file():
        return path
    import keras
    import tensorflow as tf
    from keras import layers as L

    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, x)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(conv.convert())
    os.replace(tmp, path)
    return path


def random_inputs(model: Path, n: int, seed: int) -> list[np.ndarray]:
    """n samples over each input's full range (the generator profile and bench use)."""
    from mcu_mot.device.profile import random_arrays
    from mcu_mot.ir import read_tflite

    return random_arrays([(t.shape, t.dtype) for t in read_tflite(model).inputs], n, seed)


class Row(dict):
    pass


def soak(
    device_port: int,
    rate: float,
    seconds: float,
    inputs,
    refs,
    *,
    seed: int,
    hang_after: float,
    deadline: float,
    timeout: float,
    progress=None,
) -> Row:
    """One rate against one running device; returns the row of counts."""
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.faultproxy import FaultProxy, faults_at
    from mcu_mot.errors import MotError

    n_pool = inputs[0].shape[0]
    row = Row(
        rate=rate,
        requests=0,
        right=0,
        clear_errors=0,
        wrong=0,
        hangs=0,
        other=0,
        invokes_sent=0,
        seconds=0.0,
        errors={},
        latencies=[],
    )
    f = faults_at(rate)
    with FaultProxy(device_port, seed=seed, to_device=f, to_host=f) as proxy:
        client = None
        rng = np.random.default_rng(seed)
        t_end = time.monotonic() + seconds
        t0 = time.monotonic()
        while time.monotonic() < t_end:
            i = int(rng.integers(n_pool))
            result: dict = {}
            holder = {"client": client}

            def work():
                try:
                    if holder["client"] is None:
                        holder["client"] = DeviceClient(proxy.url, timeout=timeout, retries=10, deadline=deadline)
                    c = holder["client"]
                    before = c.transport.sent
                    result["out"] = c.run_sample([x[i] for x in inputs])[1]
                    result["sent"] = c.transport.sent - before
                except MotError as e:
                    result["error"] = str(e)
                except BaseException as e:  # noqa: BLE001 - counted, never hidden
                    result["other"] = f"{type(e).__name__}: {e}"

            t = threading.Thread(target=work, daemon=True)
            start = time.monotonic()
            t.start()
            t.join(hang_after)
            row["requests"] += 1
            client = holder["client"]
            if t.is_alive():
                row["hangs"] += 1
                if client is not None:
                    client.close()
                client = None
                t.join(5)
                continue
            row["latencies"].append(time.monotonic() - start)
            if "out" in result:
                if all(np.array_equal(o, r[i]) for o, r in zip(result["out"], refs)):
                    row["right"] += 1
                else:
                    row["wrong"] += 1
            elif "error" in result:
                msg = result["error"]
                if "\n" in msg:
                    row["other"] += 1
                else:
                    row["clear_errors"] += 1
                key = msg.split(":")[0][:60]
                row["errors"][key] = row["errors"].get(key, 0) + 1
                row.setdefault("first_errors", [])
                if len(row["first_errors"]) < 3:
                    row["first_errors"].append(msg)
            else:
                row["other"] += 1
                row.setdefault("first_errors", []).append(result.get("other", "?"))
            if progress is not None:
                progress(row)
        if client is not None:
            row["redone"] = client.redone
            tr = client.transport
            row["link"] = dict(
                sent=tr.sent, resent=tr.resent, naks=tr.naks, timeouts=tr.timeouts, reconnects=tr.reconnects
            )
            client.close()
        row["seconds"] = time.monotonic() - t0
        row["faults"] = proxy.injected()
    return row


def device_invokes(port: int) -> int:
    from mcu_mot.device.client import DeviceClient

    with DeviceClient(f"socket://127.0.0.1:{port}", timeout=2.0, deadline=60.0) as c:
        return c.stats()["invokes"]


def run_target(target: str, model: Path, args, inputs, refs, work: Path, log) -> list[Row]:
    rows = []
    for k, pct in enumerate(args.rates):
        rate = pct / 100.0
        if target == "host":
            from mcu_mot.device.target import HostTarget

            dev = HostTarget(model).launch()
        else:
            from mcu_mot.device.target import QemuTarget
            from mcu_mot.fwbuild import build

            build(model, args.board, work / f"build-{args.board}")
            dev = QemuTarget(work / f"build-{args.board}", board=args.board).launch()
        port = dev.port
        stop = dev.close
        try:
            last = [time.monotonic()]

            def progress(row):
                if time.monotonic() - last[0] >= 30:
                    last[0] = time.monotonic()
                    log(
                        f"  {target} {pct:g}%: {row['requests']} requests, {row['right']} right, "
                        f"{row['clear_errors']} errors, {row['wrong']} wrong, {row['hangs']} hangs"
                    )

            seconds = args.seconds[k] if len(args.seconds) > 1 else args.seconds[0]
            row = soak(
                port,
                rate,
                seconds,
                inputs,
                refs,
                seed=args.seed + k,
                hang_after=args.hang_after,
                deadline=args.deadline,
                timeout=args.timeout,
                progress=progress,
            )
            row["target"] = target if target == "host" else args.board
            # how many INVOKEs the device ran vs the inferences the host attempted: never more
            row["device_invokes"] = device_invokes(port)
            rows.append(row)
            log(f"  {row['target']} {pct:g}%: done, {row['requests']} requests in {row['seconds']:.0f} s")
        finally:
            stop()
    return rows


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Link soak: inference round trips through a damaged link (outputs checked against simulate)")
    cols = (
        "target",
        "byte error rate",
        "seconds",
        "requests",
        "right replies",
        "clear errors",
        "wrong accepted",
        "hangs",
        "other failures",
        "device INVOKEs / requests",
        "right %",
        "mean s",
        "max s",
    )
    for c in cols:
        table.add_column(c, justify="left" if c == "target" else "right")
    for r in rows:
        lat = r["latencies"] or [0.0]
        table.add_row(
            r["target"],
            f"{100 * r['rate']:g} %",
            f"{r['seconds']:.0f}",
            str(r["requests"]),
            str(r["right"]),
            str(r["clear_errors"]),
            str(r["wrong"]),
            str(r["hangs"]),
            str(r["other"]),
            f"{r['device_invokes']} / {r['requests']}",
            f"{100 * r['right'] / max(1, r['requests']):.2f}",
            f"{np.mean(lat):.2f}",
            f"{max(lat):.2f}",
        )
    Console(width=200).print(table)
    for r in rows:
        if r.get("first_errors"):
            print(f"{r['target']} {100 * r['rate']:g} %: errors {r['errors']}")
            for m in r["first_errors"]:
                print(f"    e.g. {m}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.link_soak",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[60.0],
        help="soak duration per rate and target (default 60); one value per rate, or one for all",
    )
    ap.add_argument(
        "--rates", type=float, nargs="+", default=[0.1, 1.0, 5.0], help="byte error rates in percent (default 0.1 1 5)"
    )
    ap.add_argument(
        "--target",
        nargs="+",
        choices=["host", "qemu"],
        default=["host", "qemu"],
        help="host build of the firmware and/or QEMU (default both)",
    )
    ap.add_argument("-b", "--board", default="qemu-mps2-an386", help="emulated board (default qemu-mps2-an386)")
    ap.add_argument("--model", help=".tflite to run (default: a small 32x32x3 int8 classifier made once)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--deadline",
        type=float,
        default=30.0,
        help="the client's deadline: seconds without progress before a request fails (default 30)",
    )
    ap.add_argument("--timeout", type=float, default=1.0, help="longest wait for one reply (default 1 s)")
    ap.add_argument(
        "--hang-after",
        type=float,
        default=600.0,
        help="a request still running after this many seconds counts as a hang (default 600; the "
        "client's own bounds end every request well before)",
    )
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument(
        "--cache", help="folder for the model and the firmware build (default: the per-user cache, link-soak/)"
    )
    args = ap.parse_args(argv)
    if len(args.seconds) not in (1, len(args.rates)):
        ap.error(f"--seconds takes one value or one per rate ({len(args.rates)})")
    from mcu_mot.device.simulator import load
    from mcu_mot.errors import MotError

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        from mcu_mot.safedirs import cache_subdir, private_dir

        cache = private_dir(args.cache) if args.cache else cache_subdir("link-soak")
        model = Path(args.model) if args.model else default_model(cache)
        inputs = random_inputs(model, 64, args.seed)
        refs = load(model).run(*inputs)
        rows = []
        for target in args.target:
            rows += run_target(target, model, args, inputs, refs, cache, log)
    except MotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
