"""Hostile strings in a model file (and in its file name) never change the generated C.

Every name a .tflite holds is untrusted input: tensor names, the subgraph name, signature
and metadata names, custom op codes. A small int8 model is converted once, then rewritten
(TensorFlow's flatbuffer object API) with names made of comment closers, trigraphs and
digraphs, line splices, preprocessor directives, quotes, NUL bytes, 100 kB, invalid UTF-8,
ANSI escapes, Jinja syntax and a payload that would create a marker file through system()
if it were ever compiled as code. Each model must compile and run bit-exactly against the
TFLite Micro reference with no marker file, or (custom ops, which nothing can run) be
refused with one line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import _assert_same, convert, keras_model, random_inputs, tflm_run

from mcu_mot.errors import MotError
from mcu_mot.resources import DATA_ROOT as ROOT
from mcu_mot.safetext import MAX_NAME, c_text, check_c_fragment, clean_name

needs_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)"
)
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)

CUSTOM = 32  # BuiltinOperator.CUSTOM


def _system_payload(marker: Path, opener: str, closer: str) -> str:
    """C that runs `touch marker` when compiled inside a function body, written with no quote
    and no backslash (a char array compound literal), between `opener` (leaves the comment or
    literal the name is put in) and `closer` (swallows what the template has after it)."""
    chars = ",".join(str(ord(c)) for c in f"touch {marker}") + ",0"
    return f"{opener} {{ int system(const char *); system((char[]){{{chars}}}); }} {closer}"


def payloads(marker: Path) -> dict:
    """id -> raw name bytes."""
    return {
        "comment_closer": b"a*/ int mm_pwned = 1; /*",
        "comment_closer_newline": b"a */\nint mm_pwned = 1;\n/* b",
        "trigraph_splice_system": _system_payload(marker, "x*??/\n/", "/*").encode(),
        "splice_system": _system_payload(marker, "x*\\\n/", "/*").encode(),
        "string_breakout_system": _system_payload(marker, '"); ', '("').encode(),
        "trigraphs": b"??= ??/ ??' ??( ??) ??! ??< ??> ??- ???/",
        "digraphs": b"<: :> <% %> %: %:%: %:include <stdio.h>",
        "line_splice": b"tail\\\n\\\r\nx\\",
        "directives": b'x\n#include "/etc/passwd"\n#define model_invoke exit\n#error boom\n',
        "quotes": b'" \' \\" \\\' ""',
        "nul_bytes": b"a\x00b\x00\x00",
        "long_100k": b"A" * 100_000,
        "long_closers": b"*/??/\n" * 20_000,
        "invalid_utf8": b"\xff\xfe\xc3\x28\xed\xa0\x80\xf4\x90\x80\x80",
        "ansi_escapes": b"\x1b[31mred\x1b[0m\x1b]0;title\x07\x1b[2J",
        "jinja": b"{{ 7*7 }} {% raw %}{% endraw %} {# c #} {%- if true %}x{% endif %}",
        "format_markup": b"%s%n%x [/] [bold]b[/bold] $\\frac{$ <script>alert(1)</script> &amp;",
        "unicode_controls": "\u202e\u2028\u0085\ufeffname\u00e9".encode(),
        "empty": b"",
    }


MARKER_NAME = "SYSTEM_WAS_CALLED"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small int8 model (conv, depthwise, add, pool, dense, softmax): its bytes and folder."""
    from keras import layers as L

    def net(x):
        a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
        b = L.DepthwiseConv2D(3, padding="same")(a)
        c = L.MaxPooling2D(2)(L.Add()([a, b]))
        return L.Softmax()(L.Dense(5)(L.Flatten()(c)))

    d = tmp_path_factory.mktemp("hostile")
    return convert(keras_model(net, (6, 6, 2), seed=3), "int8"), d


def rewrite(data: bytes, name: bytes | None = None, custom: bytes | None = None) -> bytes:
    """The model with every tensor, the subgraph, each signature and metadata name set to
    `name` (+ the tensor index, so they stay distinct); with `custom`, the last op becomes
    a custom op of that code."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as S

    m = S.ModelT.InitFromObj(S.Model.GetRootAsModel(data, 0))
    if name is not None:
        for sg in m.subgraphs:
            sg.name = name
            for i, t in enumerate(sg.tensors):
                t.name = name + str(i).encode()
        for k, sig in enumerate(m.signatureDefs or []):
            sig.signatureKey = name + b"sig" + str(k).encode()
            for tm in list(sig.inputs or []) + list(sig.outputs or []):
                tm.name = name + b"io"
        buf = S.BufferT()
        buf.data = list(b"hostile")
        m.buffers.append(buf)
        meta = S.MetadataT()
        meta.name, meta.buffer = name + b"meta", len(m.buffers) - 1
        m.metadata = list(m.metadata or []) + [meta]
    if custom is not None:
        code = S.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = CUSTOM
        code.customCode = custom
        m.operatorCodes.append(code)
        op = m.subgraphs[0].operators[-1]
        op.opcodeIndex = len(m.operatorCodes) - 1
        op.builtinOptionsType, op.builtinOptions = 0, None
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _write(folder: Path, data: bytes, stem: str = "model") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{stem}.tflite"
    p.write_bytes(data)
    return p


def _code_only(text: str) -> str:
    """The C text with comments and string/char literals blanked (a lexer, not a compiler:
    enough for the checks below; the compile and run checks are the real ones)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            assert j >= 0, "unterminated comment"
            out.append(" ")
            i = j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text[i] in "\"'":
            q, j = text[i], i + 1
            while j < n and text[j] != q:
                assert text[j] != "\n", "newline in a literal"
                j += 2 if text[j] == "\\" else 1
            out.append(q + q)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def assert_safe_c(text: str):
    """Nothing in generated C that a name could have put there: plain ASCII, no trigraph or
    line splice anywhere, and outside comments and literals none of the payloads' words."""
    assert all(c == "\n" or " " <= c <= "~" for c in text), "non-ASCII or control character in generated C"
    assert "??" not in text and "\\\n" not in text and "%:" not in text
    code = re.sub(r"\bmm[wp]_\w+", "mm_ident", _code_only(text))  # identifiers from (sanitized) hints
    for bad in ("system", "pwned", "passwd", "boom", "{{", "{%", "<:", "<%"):
        assert bad not in code, bad
    for line in code.splitlines():
        if line.lstrip().startswith("#"):
            assert re.match(r"\s*#(include|define|ifndef|ifdef|endif|if|error|else|elif)\b", line), line


def assert_one_line(msg: str):
    assert msg and "\n" not in msg and "\r" not in msg and "\x1b" not in msg, repr(msg)
    assert msg.isprintable(), repr(msg)
    assert len(msg) < 2000, len(msg)


# ---------------------------------------------------------------- names: compile and run exactly


@pytest.mark.parametrize("kind", list(payloads(Path("/x"))))
def test_hostile_names_run_bit_exact(base, tmp_path, kind):
    from mcu_mot.codegen.compile import generate
    from mcu_mot.device.simulator import simulate

    data, _ = base
    marker = tmp_path / MARKER_NAME
    path = _write(tmp_path, rewrite(data, payloads(marker)[kind]))
    compiled = generate(path)
    for text in compiled.files.values():
        assert_safe_c(text)
    inputs = random_inputs(path, n=3, seed=1)
    ours = simulate(path, inputs)
    _assert_same(ours, tflm_run(path, inputs))
    assert not marker.exists(), "a name was compiled as code"
    for layer in compiled.report["layers"]:  # report names: printable, one line, bounded
        assert_one_line(layer["name"])
        assert len(layer["name"]) <= MAX_NAME + 20


def test_hostile_file_name(base, tmp_path, monkeypatch):
    """The model's file name reaches MODEL_NAME and the header comments (no "/" in a file
    name, so no comment closer: quotes, newlines, trigraphs, shell and template syntax)."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.device.simulator import simulate

    data, _ = base
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER_NAME
    stem = (
        f"m* ??= ??' ??- \n#define MODEL_HASH 0\n\"q' $(touch {MARKER_NAME}) `touch {MARKER_NAME}` %: <: "
        "{{7*7}} {% if 1 %} \x1b[0m \u202e \\"
    )
    assert "/" not in stem and len(stem.encode()) < 240
    path = _write(tmp_path / "d", data, stem)
    files = generate(path).files
    for text in files.values():
        assert_safe_c(text)
    assert re.search(r'#define MODEL_NAME "[ -~]*"\n', files["model.h"])
    inputs = random_inputs(path, n=2)
    _assert_same(simulate(path, inputs), tflm_run(path, inputs))
    assert not marker.exists()


def test_cli_simulate_hostile_names(base, tmp_path):
    """The command from the finding: `mcu-mot simulate` on the crafted model."""
    data, _ = base
    marker = tmp_path / MARKER_NAME
    path = _write(tmp_path, rewrite(data, payloads(marker)["trigraph_splice_system"]))
    x = random_inputs(path, n=2)[0]
    np.save(tmp_path / "x.npy", x)
    rc, out, err = _mm("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert rc == 0, err
    assert not marker.exists()
    _assert_same([np.load(tmp_path / "y.npy")], tflm_run(path, [x]))


# ---------------------------------------------------------------- custom op codes: one line


@pytest.mark.parametrize(
    "kind",
    [
        "comment_closer_newline",
        "trigraph_splice_system",
        "ansi_escapes",
        "long_100k",
        "invalid_utf8",
        "nul_bytes",
        "format_markup",
    ],
)
def test_hostile_custom_op_is_refused_in_one_line(base, tmp_path, kind):
    from mcu_mot.codegen.compile import generate

    data, _ = base
    marker = tmp_path / MARKER_NAME
    path = _write(tmp_path, rewrite(data, custom=payloads(marker)[kind]))
    with pytest.raises(MotError) as exc:
        generate(path)
    msg = str(exc.value)
    assert_one_line(msg)
    assert "CUSTOM:" in msg and "unsupported op" in msg
    rc, out, err = _mm("compile", path, "-o", tmp_path / "out")
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "\x1b" not in err, err
    assert not (tmp_path / "out").exists() and not marker.exists()


def test_hostile_names_and_custom_op_with_hostile_names(base, tmp_path):
    """An unsupported op whose tensors carry a hostile name: the error names them on one line."""
    from mcu_mot.codegen.compile import generate

    data, _ = base
    path = _write(tmp_path, rewrite(data, b"\x1b[31m*/\n#define x\r\n", custom=b"My\nOp"))
    with pytest.raises(MotError) as exc:
        generate(path)
    assert_one_line(str(exc.value))
    assert "CUSTOM:My\\x0aOp" in str(exc.value)


# ---------------------------------------------------------------- the generated C itself: warnings are errors


def _compile_c(cc: list, folder: Path, flags: list):
    r = subprocess.run(
        [
            *cc,
            *flags,
            "-Wall",
            "-Wtrigraphs",
            "-Werror",
            f"-I{ROOT / 'firmware' / 'kernels'}",
            f"-I{folder}",
            "-c",
            str(folder / "model.c"),
            "-o",
            str(folder / "model.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_generated_c_builds_with_werror_on_host(base, tmp_path):
    """-Werror -Wtrigraphs with trigraphs on (-std=c99) and off (-std=gnu99): no trigraph, no
    splice, no stray comment in any of the hostile models."""
    from mcu_mot.codegen.compile import generate

    data, _ = base
    cc = os.environ.get("CC", "cc")
    for kind, name in payloads(tmp_path / MARKER_NAME).items():
        folder = tmp_path / kind
        path = _write(folder, rewrite(data, name))
        for fname, text in generate(path).files.items():
            (folder / fname).write_text(text)
        for std in ("-std=c99", "-std=gnu99"):
            _compile_c([cc], folder, [std])
    assert not (tmp_path / MARKER_NAME).exists()


@needs_gcc
def test_generated_c_builds_with_werror_for_cortex_m4(base, tmp_path):
    from mcu_mot.codegen.compile import generate

    data, _ = base
    for kind in ("trigraph_splice_system", "directives", "long_closers", "invalid_utf8"):
        folder = tmp_path / kind
        path = _write(folder, rewrite(data, payloads(tmp_path / MARKER_NAME)[kind]))
        for fname, text in generate(path, "portable", "qemu-mps2-an386").files.items():
            (folder / fname).write_text(text)
        for std in ("-std=c99", "-std=gnu11"):
            _compile_c(
                ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
                folder,
                [std],
            )


@needs_gcc
def test_firmware_build_of_hostile_model(base, tmp_path):
    from mcu_mot.fwbuild import build

    data, _ = base
    marker = tmp_path / MARKER_NAME
    path = _write(tmp_path, rewrite(data, payloads(marker)["trigraph_splice_system"]), "m*??= x\n$(touch x)")
    rep = build(path, "qemu-mps2-an386", tmp_path / "fw")
    assert Path(rep["elf"]).is_file()
    for f in ("model.c", "model.h"):
        assert_safe_c((tmp_path / "fw" / "gen" / f).read_text())
    assert not marker.exists()


@needs_qemu
@pytest.mark.slow
@pytest.mark.qemu
def test_hostile_model_on_qemu_bit_exact(base, tmp_path):
    """The firmware runs the hostile model exactly, and its INFO/LAYER_INFO names are plain ASCII."""
    from harness import device_run

    data, _ = base
    marker = tmp_path / MARKER_NAME
    path = _write(tmp_path, rewrite(data, payloads(marker)["trigraph_splice_system"]))
    inputs = random_inputs(path, n=2)
    ours, prof, _ = device_run(path, "qemu-mps2-an386", inputs, tmp_path / "fw", profile=True)
    _assert_same(ours, tflm_run(path, inputs))
    for layer in prof["layers"]:
        assert re.fullmatch(r"[A-Za-z0-9 _\-.,:;/+=()@]*", layer["name"]), layer["name"]
    assert not marker.exists()


# ---------------------------------------------------------------- the sanitizers themselves


def test_clean_name_is_printable_bounded_and_one_to_one():
    raws = [v for v in payloads(Path("/m")).values()] + [
        b"a\\x00",
        b"a\x00",
        b"\xff",
        b"\\xff",
        "\u00ff".encode(),
        b"\x85",
        "\u0085".encode(),
        b"x" * MAX_NAME,
        b"x" * (MAX_NAME + 1),
        b"x" * (MAX_NAME + 2),
        b"model/conv2d/Relu;model/conv2d/BiasAdd",
        b"StatefulPartitionedCall:0",
    ]
    cleaned = [clean_name(r, "fallback") for r in raws]
    assert len(set(cleaned)) == len(set(raws))
    for c in cleaned:
        assert c.isprintable() and len(c) <= MAX_NAME + 20
    # ordinary names stay as they are
    assert clean_name(b"model/conv2d/Relu;model/conv2d/BiasAdd") == "model/conv2d/Relu;model/conv2d/BiasAdd"
    assert clean_name("caf\u00e9") == "caf\u00e9" and clean_name(b"", "t3") == "t3"


def test_c_text_whitelist():
    for raw in payloads(Path("/m")).values():
        s = c_text(clean_name(raw))
        assert re.fullmatch(r"[A-Za-z0-9 _\-.,:;/+=()@]*", s) and len(s) <= 200
        check_c_fragment(s)
    for bad in ('a"b', "a'b", "a\\", "??=", "/* x", "x */", "// c", "#x", "%:", "a\rb", "\x00", "\u00e9"):
        with pytest.raises(ValueError):
            check_c_fragment(bad)


def test_context_identifiers_come_from_sanitized_hints():
    from mcu_mot.codegen.lowering import LoweringContext

    ctx = LoweringContext()
    names = [
        ctx.array(clean_name(raw) + "_w", np.arange(i + 1, dtype=np.int8))
        for i, raw in enumerate(payloads(Path("/m")).values())
    ]
    names += [
        ctx.struct(clean_name(raw) + "_p", "mm_x_params", {"size": 1})[1:] for raw in payloads(Path("/m")).values()
    ]
    assert len(set(names)) == len(names)
    for n in names:
        assert re.fullmatch(r"mm[wp]_[A-Za-z_][A-Za-z0-9_]{0,45}", n), n
    with pytest.raises(MotError):
        ctx.struct("x", "mm_x_params", {"lut": "mmw_a /* */"})
    from mcu_mot.codegen.lowering import c_float

    assert c_float(float("nan")) == "NAN"  # a model's NaN parameter is a constant, not a call


# ---------------------------------------------------------------- reports and regexes

HOSTILE_DISPLAY = "<script>alert(1)</script><img src=x onerror=alert(2)> $\\frac{$ [/] \x1b[31m\"'&"
TAGS = ("<script>", "<img src", "<marquee>", "\x1b")


def test_profile_html_escapes_names(tmp_path):
    from mcu_mot.device import profile as PR

    prof = {
        "board": "b<",
        "model": HOSTILE_DISPLAY,
        "unit": "instructions",
        "total": 100,
        "runs": 1,
        "total_min": 100,
        "total_max": 100,
        "layers_sum": 90,
        "overhead": 10,
        "macs": 5,
        "macs_per_unit": 0.05,
        "calibration": {"method": "m<marquee>"},
        "layers": [
            {
                "index": 0,
                "name": HOSTILE_DISPLAY,
                "op": "CUSTOM:<marquee>",
                "count": 90,
                "share": 0.9,
                "macs": 5,
                "macs_per_unit": 0.05,
            }
        ],
    }
    PR.write_html(prof, tmp_path / "p.html")
    page = (tmp_path / "p.html").read_text()
    assert not [t for t in TAGS if t in page]


def test_debug_html_escapes_names(tmp_path):
    from mcu_mot.optimize.report_html import write_html

    row = {
        "index": 0,
        "name": HOSTILE_DISPLAY,
        "op": "CUSTOM:<marquee>",
        "score": 0.1,
        "rmse": 0.1,
        "max_abs_err": 0.2,
        "snr_db": 20.0,
        "nrmse": 0.1,
        "scale": 0.1,
        "zero_point": 0,
        "float_min": -1.0,
        "float_max": 1.0,
        "keras_layers": [HOSTILE_DISPLAY],
    }
    result = {
        "layers": [row],
        "tflite": "<marquee>x.tflite",
        "model": "$\\foo$",
        "samples": 4,
        "unmatched": [{"index": 1, "op": "<marquee>", "name": HOSTILE_DISPLAY}],
    }
    write_html(result, tmp_path / "d.html")
    page = (tmp_path / "d.html").read_text()
    assert not [t for t in TAGS if t in page]


@pytest.mark.parametrize("pattern", ["(" * 100_000 + ")" * 100_000, "a{99999999999}", "x\n(", "\x1b[31m[", "(?P<"])
def test_bad_layer_regex_is_one_line(pattern):
    import keras

    from mcu_mot.optimize.selective import match_layers

    model = keras_model(lambda x: keras.layers.Dense(2, name="dense")(x), (3,))
    with pytest.raises(MotError) as exc:
        match_layers(model, pattern, "--exclude")
    assert_one_line(str(exc.value))
    assert "--exclude" in str(exc.value)


def test_no_shell_and_no_pickles_in_the_package():
    for p in (ROOT / "mcu_mot").rglob("*.py"):
        text = p.read_text()
        assert not re.search(r"shell\s*=\s*True", text), p
        assert not re.search(r"allow_pickle\s*=\s*True", text), p
        assert not re.search(r"\bos\.(system|popen)\(", text), p


def _mm(*args):
    env = dict(os.environ)
    env.pop("MCU_MOT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=env)
    return proc.returncode, proc.stdout, proc.stderr
