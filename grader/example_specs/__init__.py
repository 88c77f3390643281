"""Per-assignment definitions of the bundled example submissions (buggy and hostile cells)."""
