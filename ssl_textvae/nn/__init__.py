"""The torch modules: the text VAE (LSTM or pretrained-transformer encoder, BN on the posterior
means, decoder), its softmaxes and optimizers, and the eval-mode passes over them (batched
encoding, generation). Torch only; no scikit-learn."""
