"""Using trained models: probabilities, predictions, Grad-CAM explanations."""
