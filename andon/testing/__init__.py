"""Tools for testing agents served by andon (not imported by `import andon`)."""
