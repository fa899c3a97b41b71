"""A small generative adversarial network (GAN) on Fashion-MNIST, with dense layers only.

    python examples/gan.py            # 10,000 steps on the full data set if installed (~1 min)
    python examples/gan.py --small    # a few hundred steps on the shipped subset

Two models play against each other:
    generator      32 random numbers -> Dense 128 -> Dense 784 (sigmoid): a fake image;
    discriminator  784 pixels -> Dense 128 -> Dense 1 (sigmoid): the probability that the
                   image is a real one.
They are chained into ``gan = pynn.Sequential([generator, discriminator])``, which maps noise
to the discriminator's verdict on the generated image. The three models share their layers.

Keras 3's recipe, with each model compiled once: every training step
    1. switches ``discriminator.trainable`` on and trains the discriminator with its own
       `train_on_batch` on half real images (label 1), half generated ones (label 0);
    2. switches it off and trains the generator through ``gan.train_on_batch`` on fresh noise
       labelled 1 ("real"): the gradient flows through the frozen discriminator into the
       generator, which learns to produce what the discriminator takes for real images.
A change of `trainable` takes effect at the next step, without compiling again.

We measure what the generator has learned about the data's brightness: the mean pixel of
1,000 generated images, over the whole image and over the background (the border pixels that
are dark in the average real image), for the untrained generator (about 0.5 everywhere: a
sigmoid of small random numbers) and the trained one, next to the real images' values. And
we write a grid of generated images to a PNG.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pynn
from pynn.datasets import fashion_mnist
from pynn.layers import Dense

LATENT = 32


def build(hidden=128, learning_rate=5e-4):
    generator = pynn.Sequential([pynn.Input((LATENT,)),
                                 Dense(hidden, activation="leaky_relu"),
                                 Dense(784, activation="sigmoid")], name="generator")
    discriminator = pynn.Sequential([pynn.Input((784,)),
                                     Dense(hidden, activation="leaky_relu"),
                                     Dense(1, activation="sigmoid")], name="discriminator")
    # Adam with beta_1 = 0.5, the usual GAN setting: less momentum, as the target keeps moving.
    discriminator.compile(optimizer=pynn.optimizers.Adam(learning_rate, beta_1=0.5),
                          loss="binary_crossentropy", metrics=["accuracy"])
    gan = pynn.Sequential([generator, discriminator], name="gan")
    gan.compile(optimizer=pynn.optimizers.Adam(learning_rate, beta_1=0.5),
                loss="binary_crossentropy")
    return generator, discriminator, gan


def noise(rng, n):
    return rng.normal(size=(n, LATENT)).astype(np.float32)


def discriminator_step(generator, discriminator, real, rng):
    """One step of the discriminator on `real` images and as many generated ones; returns
    its loss and accuracy on that batch."""
    fake = generator.predict(noise(rng, len(real)), verbose=0)
    x = np.concatenate([real, fake])
    y = np.concatenate([np.ones(len(real)), np.zeros(len(fake))]).astype(np.float32)
    discriminator.trainable = True
    loss, accuracy = discriminator.train_on_batch(x, y)
    return loss, accuracy


def generator_step(discriminator, gan, batch_size, rng):
    """One step of the generator through the frozen discriminator; returns its loss."""
    discriminator.trainable = False
    return gan.train_on_batch(noise(rng, batch_size), np.ones(batch_size, np.float32))


def brightness(images, background):
    """(mean pixel, mean pixel over the `background` mask) of a batch of images."""
    return float(images.mean()), float(images[:, background].mean())


def main(small=False, out_dir="gan_output", seed=0, steps=None, batch_size=64):
    pynn.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    if small:
        (x, _), _ = fashion_mnist.load_subset()
    else:
        ((x, _), _), _ = fashion_mnist.load_data_or_subset()
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    steps = steps or (300 if small else 10000)

    # The background: the pixels that are dark (mean < 0.02) in the average real image, the
    # border around the articles.
    background = x.mean(axis=0) < 0.02
    data = brightness(x, background)

    generator, discriminator, gan = build()
    z_eval = noise(rng, 1000)              # the same noise before and after training
    z_grid = z_eval[:64]
    before = brightness(generator.predict(z_eval, verbose=0), background)

    d_losses, d_accs, g_losses = [], [], []
    for step in range(steps):
        real = x[rng.integers(0, len(x), batch_size)]
        d_loss, d_acc = discriminator_step(generator, discriminator, real, rng)
        g_loss = generator_step(discriminator, gan, batch_size, rng)
        d_losses.append(d_loss)
        d_accs.append(d_acc)
        g_losses.append(g_loss)
        if not small and (step + 1) % 1000 == 0:
            print(f"step {step + 1}: discriminator loss {np.mean(d_losses[-1000:]):.3f} "
                  f"(accuracy {np.mean(d_accs[-1000:]):.2f}), generator loss "
                  f"{np.mean(g_losses[-1000:]):.3f}")
    discriminator.trainable = True

    after = brightness(generator.predict(z_eval, verbose=0), background)
    tail = max(1, steps // 10)
    print(f"{steps} steps; over the last {tail}: discriminator loss "
          f"{np.mean(d_losses[-tail:]):.3f} (accuracy {np.mean(d_accs[-tail:]):.2f}), "
          f"generator loss {np.mean(g_losses[-tail:]):.3f}")
    for k, what in enumerate(("mean pixel", f"mean background pixel ({background.sum()} "
                                            f"pixels)")):
        print(f"{what}: real images {data[k]:.3f}, generated untrained {before[k]:.3f}, "
              f"trained {after[k]:.3f}")

    path = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("the picture of generated images needs matplotlib: pip install pynn[plot]")
    else:
        from matplotlib.figure import Figure  # no pyplot: works without a display

        images = generator.predict(z_grid, verbose=0).reshape(8, 8, 28, 28)
        mosaic = images.transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)   # an 8 x 8 grid
        fig = Figure(figsize=(6, 6.4))
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        fig.suptitle(f"generated images after {steps} steps")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "generated.png")
        fig.savefig(path, dpi=80)
        print("wrote", path)
    return {"mean_pixel": {"data": data[0], "untrained": before[0], "trained": after[0]},
            "background": {"data": data[1], "untrained": before[1], "trained": after[1]},
            "d_loss": d_losses,
            "d_accuracy": d_accs, "g_loss": g_losses, "file": path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A dense GAN on Fashion-MNIST")
    parser.add_argument("--small", action="store_true", help="a few hundred steps on the subset")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--output", default="gan_output")
    args = parser.parse_args()
    main(small=args.small, out_dir=args.output, steps=args.steps)
