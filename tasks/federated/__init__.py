"""Training across sites or clients, independent of the model: membership, sync rules, links and wire formats."""
