"""What units prefer: activation maximisation (Lucid's recipe and Yosinski et al.'s pixel-space variant)."""
