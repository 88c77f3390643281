"""The autograder: hidden checks run in this trusted package; student code runs in a sandboxed worker."""
