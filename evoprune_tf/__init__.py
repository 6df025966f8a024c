"""evoprune-tf."""
