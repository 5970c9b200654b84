"""Input preprocessing that does not depend on a model: image decoding. Tokenisation and the model's
own resize/crop/normalise live with each tower (``models``), since they depend on the model."""
