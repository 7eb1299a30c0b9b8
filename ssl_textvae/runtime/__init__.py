"""Where and how torch runs: devices, precision, CPU threads. Imports nothing else of the package."""
