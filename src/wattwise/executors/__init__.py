"""Executors: carry a scheduling decision out on a real system (Slurm)."""
