"""What every part shares: user errors, atomic writes, checkpoint digests, the config schema, process settings.
Imports nothing else of the package."""
