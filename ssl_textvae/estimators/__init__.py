"""Where scikit-learn meets torch: BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, their
parameter checks, features and the saved-model format."""
