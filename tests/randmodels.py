"""Random Keras 3 model generator for the property tests: random layer stacks,
strides, paddings, dilations, odd channel counts, depth multipliers, with and
without bias, residual adds and concatenations."""

from __future__ import annotations

import numpy as np


def random_model(seed: int, max_blocks: int = 5):
    import keras
    from keras import layers as L

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    h = int(rng.integers(6, 17))
    w = int(rng.integers(6, 17))
    c = int(rng.choice([1, 2, 3, 4, 5]))
    inp = keras.Input((h, w, c))
    x = inp

    def spatial(t):
        return int(t.shape[1]), int(t.shape[2])

    def conv(t):
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        # Keras 3 turns dilation_rate into SPACE_TO_BATCH_ND + CONV + BATCH_TO_SPACE_ND, and TFLM's
        # SPACE_TO_BATCH_ND pads with an uninitialized zero point, so no bit-exact reference exists
        # for it: dilated convs are tested as native ops in test_ops_conv, the pair in test_batch_space.
        dil = 1
        stride = 1 if dil > 1 else int(rng.choice([1, 2]))
        pad = str(rng.choice(["same", "valid"]))
        if pad == "valid" and min(s - (kk - 1) * dil for s, kk in zip(spatial(t), k)) < 1:
            pad = "same"
        return L.Conv2D(
            int(rng.choice([1, 3, 4, 5, 7, 8, 16])),
            k,
            strides=stride,
            padding=pad,
            dilation_rate=dil,
            use_bias=bool(rng.integers(0, 2)),
            activation=rng.choice([None, "relu", "relu6"]),
        )(t)

    def dwconv(t):
        k = int(rng.choice([1, 3]))
        stride = int(rng.choice([1, 2]))
        pad = "same" if min(spatial(t)) < 4 else str(rng.choice(["same", "valid"]))
        return L.DepthwiseConv2D(
            k,
            strides=stride,
            padding=pad,
            depth_multiplier=int(rng.choice([1, 1, 2, 3])),
            use_bias=bool(rng.integers(0, 2)),
        )(t)

    def bn_act(t):
        t = L.BatchNormalization()(t)
        return rng.choice(
            [
                L.ReLU(),
                L.ReLU(max_value=6.0),
                L.LeakyReLU(negative_slope=0.2),
                L.Activation("tanh"),
                L.Activation("sigmoid"),
            ]
        )(t)

    def pool(t):
        if min(spatial(t)) < 2:
            return t
        cls = rng.choice([L.MaxPooling2D, L.AveragePooling2D])
        return cls(
            int(rng.choice([2, 3])) if min(spatial(t)) >= 3 else 2, strides=int(rng.choice([1, 2])), padding="same"
        )(t)

    def residual(t):
        y = L.Conv2D(int(t.shape[-1]), 3, padding="same")(t)
        return L.Add()([t, y]) if rng.integers(0, 2) else L.Subtract()([t, y])

    def concat(t):
        y = L.Conv2D(int(rng.choice([2, 3])), 1)(t)
        return L.Concatenate()([t, y])

    def padding(t):
        return L.ZeroPadding2D(((int(rng.integers(0, 2)), 1), (1, int(rng.integers(0, 2)))))(t)

    blocks = [conv, conv, dwconv, bn_act, pool, residual, concat, padding]
    for _ in range(int(rng.integers(2, max_blocks + 1))):
        x = blocks[int(rng.integers(0, len(blocks)))](x)
    if rng.integers(0, 2):
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.Flatten()(x)
    x = L.Dense(int(rng.integers(2, 11)), use_bias=bool(rng.integers(0, 2)))(x)
    if rng.integers(0, 2):
        x = L.Softmax()(x)
    model = keras.Model(inp, x)
    for v in model.weights:
        if "bias" in v.path or "beta" in v.path:
            v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype(np.float32))
        if "moving_mean" in v.path:
            v.assign(rng.normal(0, 0.2, v.shape).astype(np.float32))
    return model
