"""Class names of the datasets oatdeploy trains on, so predictions read as words. Torch-free."""

from __future__ import annotations

FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CLASS_NAMES = {"fmnist-mini": FASHION_MNIST, "fashion-mnist": FASHION_MNIST, "cifar10": CIFAR10}


def class_names(dataset: str | None, num_classes: int) -> list[str]:
    """The dataset's names in label order; the label numbers as text for a dataset not listed here."""
    names = CLASS_NAMES.get(dataset or "")
    return list(names) if names and len(names) == num_classes else [str(i) for i in range(num_classes)]
