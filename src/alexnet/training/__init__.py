"""Lightning around the network and the data: the module, the paper's SGD, callbacks and loggers, the checks
of a run's config, its run directory, resume, evaluation and results.json. Imports base, network and data."""
