"""Round policies, key epochs, training rounds, encrypted submissions and aggregates."""
