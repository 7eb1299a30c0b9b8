"""Where and how torch runs: devices, precision, CPU threads, the matrix-multiply path. Imports nothing else of the package."""
