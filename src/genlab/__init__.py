"""genlab: a workbench for classic generative models (RBM, DBN, Hopfield, VAE, char-LSTM, EBM)."""

__version__ = "0.1.0"
