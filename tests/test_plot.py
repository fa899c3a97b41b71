"""pynn.plot: every function returns a Figure holding what it claims to draw."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before matplotlib is imported: no display needed

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import pynn  # noqa: E402
from pynn import plot  # noqa: E402


def small_model(seed=0, inputs=(4, 4), hidden=5, outputs=3, activation="relu"):
    pynn.utils.set_random_seed(seed)
    layers = [pynn.Input(inputs), pynn.layers.Flatten()]
    if hidden:
        layers.append(pynn.layers.Dense(hidden, activation=activation))
    layers.append(pynn.layers.Dense(outputs))
    return pynn.Sequential(layers)


LOGS = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.45, 0.6, 0.7],
        "learning_rate": [1e-3, 1e-3, 1e-3]}


def test_history_one_panel_per_metric_with_train_and_validation():
    fig = plot.history(LOGS)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]       # the learning rate is not a metric
    for ax, name in zip(fig.axes, titles):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["training", "validation"]
        np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
        np.testing.assert_array_equal(lines[0].get_ydata(), LOGS[name])
        np.testing.assert_array_equal(lines[1].get_ydata(), LOGS["val_" + name])


def test_history_accepts_a_history_object_and_a_metric_subset():
    x = np.random.default_rng(0).random((20, 4, 4)).astype(np.float32)
    y = np.arange(20) % 3
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    hist = model.fit(x, y, epochs=2, verbose=0)
    fig = plot.history(hist, metrics="loss")
    assert len(fig.axes) == 1
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(),
                                  hist.history["loss"])


def test_history_into_a_given_axes_and_errors():
    base = Figure()
    ax = base.add_subplot(1, 1, 1)
    assert plot.history(LOGS, metrics=["loss"], ax=ax) is base
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="'f1'"):
        plot.history(LOGS, metrics=["f1"])
    with pytest.raises(TypeError, match="history_or_dict"):
        plot.history([1, 2])


def test_confusion_matrix_from_labels_counts_each_cell():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    names = ["a", "b", "c", "d"]
    fig = plot.confusion_matrix(y_true, y_pred, class_names=names)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    expected = np.zeros((4, 4))
    np.add.at(expected, (y_true, y_pred), 1)
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), expected)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(int(v)) for v in expected.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert len(fig.axes) == 2  # the matrix and its colour bar


@pytest.mark.parametrize("normalize, axis", [(True, 1), ("true", 1), ("pred", 0), ("all", None)])
def test_confusion_matrix_normalised(normalize, axis):
    cm = np.array([[5, 1, 0], [2, 2, 0], [0, 3, 7]])
    fig = plot.confusion_matrix(cm, normalize=normalize)
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    total = cm.sum(axis=axis, keepdims=axis is not None)
    np.testing.assert_allclose(shown, cm / total)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        plot.confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class_names"):
        plot.confusion_matrix(np.eye(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="normalize"):
        plot.confusion_matrix(np.eye(2), normalize="rows")


def test_weight_histograms_one_per_tensor():
    model = small_model()
    weights = model.get_weights()
    fig = plot.weight_histograms(model)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == len(weights) == 4
    for ax, w in zip(axes, weights):
        # Every value falls in some bin: the bar heights add up to the tensor's size.
        assert sum(p.get_height() for p in ax.patches) == w.size
        assert str(w.shape) in ax.get_title()


def test_first_layer_weights_shows_each_unit_as_an_image():
    model = small_model(hidden=6)
    kernel = model.get_weights()[0]                    # (16, 6)
    fig = plot.first_layer_weights(model, image_shape=(4, 4), n=4)
    assert isinstance(fig, Figure)
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(images) == 4
    for unit, image in enumerate(images):
        np.testing.assert_array_equal(image, kernel[:, unit].reshape(4, 4))
    assert len([ax for ax in plot.first_layer_weights(model, (4, 4), n=50).axes
                if ax.get_images()]) == 6             # n is capped at the unit count
    with pytest.raises(ValueError, match="image_shape"):
        plot.first_layer_weights(model, image_shape=(28, 28))


def test_saliency_of_a_linear_model_is_its_weight_column():
    # For a linear model, d out_c / d x = kernel[:, c] whatever x is: an exact reference.
    model = small_model(hidden=0, outputs=3)
    kernel = model.get_weights()[0]
    x = np.random.default_rng(2).random((2, 4, 4)).astype(np.float32)
    fig = plot.saliency(model, x, class_index=1, image_shape=(4, 4))
    assert isinstance(fig, Figure)
    images = [ax.get_images()[0].get_array() for ax in fig.axes]
    assert len(images) == 4                            # input and saliency per sample
    for i in range(2):
        np.testing.assert_array_equal(images[2 * i], x[i])
        # float32 gradient through the engine vs the stored float32 kernel: exact up to
        # rounding of a single product per element.
        np.testing.assert_allclose(images[2 * i + 1], np.abs(kernel[:, 1]).reshape(4, 4),
                                   rtol=1e-6, atol=1e-7)
    assert "class 1" in fig.axes[1].get_title()


def test_saliency_defaults_to_the_predicted_class_and_takes_one_sample():
    model = small_model(hidden=0, outputs=3)
    kernel = model.get_weights()[0]
    x = np.random.default_rng(3).random((4, 4)).astype(np.float32)   # one sample
    predicted = int(np.argmax(model.predict(x[None], verbose=0)))
    fig = plot.saliency(model, x, image_shape=(4, 4))
    np.testing.assert_allclose(fig.axes[1].get_images()[0].get_array(),
                               np.abs(kernel[:, predicted]).reshape(4, 4), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="image_shape"):
        plot.saliency(model, x, image_shape=(28, 28))


def test_figures_save_as_png(tmp_path):
    fig = plot.confusion_matrix(np.eye(3, dtype=int) * 4)
    fig.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
