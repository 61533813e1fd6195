"""``python -m codec.train`` / ``accelerate launch -m codec.train``: see `codec.train.loop.main`."""

from codec.train.loop import main

main()
