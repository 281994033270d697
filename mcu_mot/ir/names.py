"""The Keras layer names that TF's tensor names carry, for tables a user reads.

The converter names a tensor after the ops that made it, joined by ';', each a name-scope
path "model/layer/op" (e.g. "digits_cnn_1/conv2d_1/convolution;digits_cnn_1/conv2d_1/Squeeze1").
The second path element is the Keras layer. When the converter traced the model a second
time, TF made every scope unique by appending "_N" to the model's scope and to each layer's
("digits_cnn" -> "digits_cnn_1", "conv2d" -> "conv2d_1", "conv2d_1" -> "conv2d_1_2"); that
suffix is taken off only when every layer of the model carries one under the same suffixed
model scope. Names that carry no layer are returned whole."""

from __future__ import annotations

import re

_SUFFIX = re.compile(r"_\d+$")


def _scopes(name: str):
    """(model scope, layer scope) of the first ';'-part that is a "model/layer/op" path."""
    for part in name.split(";"):
        segs = part.split("/")
        if len(segs) >= 3 and segs[0] and segs[1]:
            return segs[0], segs[1]
    return None


def keras_layer_names(names: list[str]) -> list[str]:
    """One display name per tensor name (same order): the Keras layer, else the whole name."""
    scopes = [_scopes(n) for n in names]
    found = [s for s in scopes if s is not None]
    retraced = (
        bool(found)
        and len({m for m, _ in found}) == 1
        and _SUFFIX.search(found[0][0]) is not None
        and all(_SUFFIX.search(layer) for _, layer in found)
    )
    out = []
    for name, s in zip(names, scopes):
        if s is None:
            out.append(name)
        else:
            out.append(_SUFFIX.sub("", s[1]) if retraced else s[1])
    return out
