"""The Broden dataset format: primitives, writer, reader and download."""
