"""Models: `Sequential`, and loading/saving them."""
from pynn.models.saving import load_model, save_model
from pynn.models.sequential import Sequential

__all__ = ["Sequential", "load_model", "save_model"]
