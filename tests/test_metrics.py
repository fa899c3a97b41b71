"""pynn.metrics against hand-computed cases and scikit-learn's implementations."""
import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics")

from pynn import metrics as m  # noqa: E402

# Both sides compute the same ratios of small integer counts in float64; only the summation
# order of the averages can differ, so agreement is to a few ulps.
TOL = dict(rtol=1e-12, atol=1e-15)
APPROX = dict(rel=1e-12, abs=1e-15)


def random_labels(seed, n, k, skew=False):
    rng = np.random.default_rng(seed)
    p = None
    if skew:
        p = rng.dirichlet(np.full(k, 0.5))
    t = rng.choice(k, size=n, p=p)
    # Predictions right about 60% of the time so scores are neither ~0 nor ~1.
    pred = np.where(rng.random(n) < 0.6, t, rng.choice(k, size=n))
    return t, pred


# ---------------------------------------------------------------------------------------------
# Hand-computed cases

def test_confusion_matrix_by_hand():
    t = [0, 0, 1, 1, 1, 2]
    p = [0, 1, 1, 1, 2, 0]
    expected = np.array([[1, 1, 0],
                         [0, 2, 1],
                         [1, 0, 0]])
    c = m.confusion_matrix(t, p)
    np.testing.assert_array_equal(c, expected)
    assert c.dtype == np.int64
    # num_classes adds empty rows/columns for classes seen nowhere.
    c5 = m.confusion_matrix(t, p, num_classes=5)
    assert c5.shape == (5, 5)
    np.testing.assert_array_equal(c5[:3, :3], expected)
    assert c5[3:].sum() == 0 and c5[:, 3:].sum() == 0


def test_binary_scores_by_hand():
    # tp = 2 (idx 1, 3), fp = 1 (idx 4), fn = 1 (idx 2), tn = 1 (idx 0)
    t = [0, 1, 1, 1, 0]
    p = [0, 1, 0, 1, 1]
    assert m.precision_score(t, p) == pytest.approx(2 / 3)
    assert m.recall_score(t, p) == pytest.approx(2 / 3)
    assert m.f1_score(t, p) == pytest.approx(2 / 3)
    # Class 0 as positive: tp = 1, fp = 1, fn = 1.
    assert m.precision_score(t, p, pos_label=0) == pytest.approx(1 / 2)
    assert m.recall_score(t, p, pos_label=0) == pytest.approx(1 / 2)


def test_multiclass_averages_by_hand():
    t = [0, 0, 0, 1, 2, 2]
    p = [0, 0, 1, 1, 1, 2]
    # per class: P = [2/2, 1/3, 1/1], R = [2/3, 1/1, 1/2], support [3, 1, 2]
    P = np.array([1.0, 1 / 3, 1.0])
    R = np.array([2 / 3, 1.0, 0.5])
    F = 2 * P * R / (P + R)
    np.testing.assert_allclose(m.precision_score(t, p, average=None), P)
    np.testing.assert_allclose(m.recall_score(t, p, average=None), R)
    np.testing.assert_allclose(m.f1_score(t, p, average=None), F)
    assert m.precision_score(t, p, average="macro") == pytest.approx(P.mean())
    assert m.recall_score(t, p, average="weighted") == pytest.approx(
        (3 * 2 / 3 + 1 * 1 + 2 * 0.5) / 6)
    assert m.f1_score(t, p, average="macro") == pytest.approx(F.mean())
    # micro pools the counts: 4 of 6 right.
    for fn in (m.precision_score, m.recall_score, m.f1_score):
        assert fn(t, p, average="micro") == pytest.approx(4 / 6)


def test_undefined_ratios_use_zero_division():
    # Class 2 is never predicted (precision 0/0) and class 3 appears nowhere.
    t = [0, 1, 2]
    p = [0, 1, 1]
    assert m.precision_score(t, p, average=None, num_classes=4).tolist() == [1.0, 0.5, 0.0, 0.0]
    got = m.precision_score(t, p, average=None, num_classes=4, zero_division=1)
    assert got.tolist() == [1.0, 0.5, 1.0, 1.0]
    assert np.isnan(m.recall_score(t, p, average=None, num_classes=4, zero_division=np.nan)[3])


def test_classification_report_by_hand():
    t = [0, 1, 1]
    p = [0, 1, 0]
    text = m.classification_report(t, p, class_names=["cat", "dog"], digits=2)
    expected = ("              precision    recall  f1-score   support\n"
                "\n"
                "         cat       0.50      1.00      0.67         1\n"
                "         dog       1.00      0.50      0.67         2\n"
                "\n"
                "    accuracy                           0.67         3\n"
                "   macro avg       0.75      0.75      0.67         3\n"
                "weighted avg       0.83      0.67      0.67         3\n")
    assert text == expected
    d = m.classification_report(t, p, class_names=["cat", "dog"], output_dict=True)
    assert d["dog"] == {"precision": 1.0, "recall": 0.5, "f1-score": pytest.approx(2 / 3),
                        "support": 2}
    assert d["accuracy"] == pytest.approx(2 / 3)
    assert d["weighted avg"]["support"] == 3


def test_classification_report_long_names_widen_the_first_column():
    names = ["T-shirt/top", "a very long class name"]
    text = m.classification_report([0, 1], [0, 1], class_names=names)
    lines = text.splitlines()
    assert lines[2].startswith(" " * (len(names[1]) - len(names[0])) + names[0] + " ")
    assert lines[3].startswith(names[1] + " ")


def test_roc_auc_by_hand():
    # Pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) loss, (0.8 vs both) win: 3/4.
    assert m.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # A tie between a positive and a negative counts one half: pairs win, tie, win, win.
    assert m.roc_auc_score([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)
    assert m.roc_auc_score([1, 0], [2.0, 1.0]) == 1.0
    assert m.roc_auc_score([1, 0], [1.0, 2.0]) == 0.0
    assert m.roc_auc_score([True, False, True], [3, 3, 3]) == 0.5


def test_regression_by_hand():
    assert m.mean_squared_error([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / 3)
    assert m.mean_absolute_error([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    # (n, 1) and (n,) are the same single output.
    assert m.mean_squared_error(np.array([[1.0], [3.0]]), [2.0, 2.0]) == pytest.approx(1.0)
    # Two outputs are averaged uniformly.
    assert m.mean_absolute_error([[0, 0], [0, 0]], [[1, 3], [1, 3]]) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# Against scikit-learn on random labels

@pytest.mark.parametrize("seed,n,k,skew", [(0, 1, 2, False), (1, 7, 3, False),
                                           (2, 200, 5, True), (3, 1000, 10, False),
                                           (4, 50, 10, True)])
def test_against_sklearn_multiclass(seed, n, k, skew):
    t, p = random_labels(seed, n, k, skew)
    labels = np.arange(k)
    np.testing.assert_array_equal(m.confusion_matrix(t, p, num_classes=k),
                                  sk.confusion_matrix(t, p, labels=labels))
    for average in ("macro", "micro", "weighted", None):
        for ours, theirs in ((m.precision_score, sk.precision_score),
                             (m.recall_score, sk.recall_score), (m.f1_score, sk.f1_score)):
            got = ours(t, p, average=average, num_classes=k)
            want = theirs(t, p, average=average, labels=labels, zero_division=0)
            np.testing.assert_allclose(got, want, **TOL,
                                       err_msg=f"{ours.__name__} average={average}")
    names = [f"class {i}" for i in range(k)]
    for digits in (2, 4):
        assert m.classification_report(t, p, class_names=names, digits=digits) == \
            sk.classification_report(t, p, labels=labels, target_names=names, digits=digits,
                                     zero_division=0)
    ours = m.classification_report(t, p, num_classes=k, output_dict=True)
    theirs = sk.classification_report(t, p, labels=labels, output_dict=True, zero_division=0)
    assert ours.keys() == theirs.keys()
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"], **APPROX)
    for key in ours:
        if key != "accuracy":
            for field in ("precision", "recall", "f1-score", "support"):
                assert ours[key][field] == pytest.approx(theirs[key][field], **APPROX), \
                    (key, field)


@pytest.mark.parametrize("seed", range(4))
def test_against_sklearn_binary(seed):
    t, p = random_labels(seed, 60 + seed, 2)
    for pos in (0, 1):
        for ours, theirs in ((m.precision_score, sk.precision_score),
                             (m.recall_score, sk.recall_score), (m.f1_score, sk.f1_score)):
            assert ours(t, p, pos_label=pos) == pytest.approx(
                theirs(t, p, pos_label=pos, zero_division=0), **APPROX)


@pytest.mark.parametrize("seed,n,ties", [(0, 2, False), (1, 10, True), (2, 500, False),
                                         (3, 500, True), (4, 2001, True)])
def test_roc_auc_against_sklearn(seed, n, ties):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    t[0], t[-1] = 0, 1  # both classes present
    score = t * 0.7 + rng.normal(size=n)
    if ties:
        score = np.round(score, 1)  # many equal scores across the classes
    assert m.roc_auc_score(t, score) == pytest.approx(sk.roc_auc_score(t, score), **APPROX)


@pytest.mark.parametrize("shape", [(37,), (37, 1), (20, 3)])
def test_regression_against_sklearn(shape):
    rng = np.random.default_rng(len(shape))
    t = rng.normal(size=shape)
    p = t + rng.normal(scale=0.3, size=shape)
    assert m.mean_squared_error(t, p) == pytest.approx(sk.mean_squared_error(t, p), **APPROX)
    assert m.mean_absolute_error(t, p) == pytest.approx(sk.mean_absolute_error(t, p), **APPROX)


# ---------------------------------------------------------------------------------------------
# Bad input

@pytest.mark.parametrize("fn", [m.confusion_matrix, m.classification_report,
                                lambda t, p: m.f1_score(t, p, average="macro")])
def test_classification_bad_input(fn):
    with pytest.raises(ValueError, match="same length.*3 and 2"):
        fn([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match=">= 0"):
        fn([0, -1], [0, 1])
    with pytest.raises(ValueError, match="integer class indices"):
        fn([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="argmax"):
        fn(np.eye(3), [0, 1, 2])
    with pytest.raises(TypeError, match="dtype"):
        fn(["a", "b"], [0, 1])


def test_labels_out_of_range():
    with pytest.raises(ValueError, match="y_pred: label 3 is out of range for num_classes=3"):
        m.confusion_matrix([0, 1, 2], [0, 1, 3], num_classes=3)
    with pytest.raises(ValueError, match="y_true: label 5"):
        m.classification_report([5, 1], [0, 1], class_names=["a", "b"])
    with pytest.raises(ValueError, match="average='binary'"):
        m.precision_score([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        m.confusion_matrix([0], [0], num_classes=0)


def test_bad_options():
    with pytest.raises(ValueError, match="average"):
        m.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="pos_label"):
        m.f1_score([0, 1], [0, 1], pos_label=2)
    with pytest.raises(ValueError, match="zero_division"):
        m.f1_score([0, 1], [0, 1], zero_division="warn")
    with pytest.raises(ValueError, match="digits"):
        m.classification_report([0, 1], [0, 1], digits=-1)
    with pytest.raises(ValueError, match="distinct"):
        m.classification_report([0, 1], [0, 1], class_names=["a", "a"])


def test_roc_auc_bad_input():
    with pytest.raises(ValueError, match="only one class"):
        m.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        m.roc_auc_score([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        m.roc_auc_score([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        m.roc_auc_score([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        m.roc_auc_score([0, 1], [[0.1, 0.9], [0.8, 0.2]])


def test_regression_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        m.mean_squared_error([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        m.mean_absolute_error([], [])
    with pytest.raises(ValueError, match="NaN or infinity"):
        m.mean_squared_error([1.0, np.inf], [1.0, 2.0])
    with pytest.raises(TypeError, match="dtype"):
        m.mean_squared_error(["a"], ["b"])
