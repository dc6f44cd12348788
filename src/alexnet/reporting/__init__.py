"""What users read after runs: report.md and its plots, the paper's figures, the wandb dashboard. Imports
every part below it, and nothing imports it but the entry points."""
