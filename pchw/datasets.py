"""Offline datasets: XOR and the ones scikit-learn ships inside its wheel.

Each comes as a :class:`Dataset` with a fixed, stratified train/test split (seeded) and features
scaled to a range the default value formats hold: digits' pixels ``0..16`` -> ``0..1``;
the tabular datasets standardised with the training split's mean and deviation, then clipped
to ``[-4, 4]``. Targets are one-hot vectors (``0`` and ``1``).
"""

from dataclasses import dataclass

import numpy as np

from .errors import PchwError

__all__ = ["Dataset", "DATASETS", "load_dataset"]

DATASETS = ("xor", "iris", "wine", "breast_cancer", "digits")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray     # class labels
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self):
        return self.x_train.shape[1]

    def one_hot(self, labels):
        return np.eye(self.n_classes)[labels]

    def describe(self):
        return (f"{self.name}: {len(self.x_train)} training and {len(self.x_test)} test samples, "
                f"{self.n_features} features, {self.n_classes} classes")


def _split(x, y, test_fraction, seed):
    """Stratified split: the same fraction of each class goes to the test set."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[:int(round(len(idx) * test_fraction))])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def load_dataset(name, seed=0, test_fraction=0.2):
    """Load ``name`` (one of :data:`DATASETS`) split with ``seed``; XOR has its 4 points in both."""
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array([0, 1, 1, 0])
        return Dataset("xor", x, y, x.copy(), y.copy(), 2)
    if name not in DATASETS:
        raise PchwError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    from sklearn import datasets as skd
    loader = {"iris": skd.load_iris, "wine": skd.load_wine,
              "breast_cancer": skd.load_breast_cancer, "digits": skd.load_digits}[name]
    bunch = loader()
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    x_train, y_train, x_test, y_test = _split(x, y, test_fraction, seed)
    if name == "digits":
        x_train, x_test = x_train / 16.0, x_test / 16.0
    else:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train = np.clip((x_train - mean) / std, -4, 4)
        x_test = np.clip((x_test - mean) / std, -4, 4)
    return Dataset(name, x_train, y_train, x_test, y_test, int(y.max()) + 1)
