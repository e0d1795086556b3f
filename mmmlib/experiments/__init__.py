"""Chapter experiments that fit models to simulated worlds and score them against the truth."""
