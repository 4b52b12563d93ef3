"""Finding and proving super weights: feed-forward discovery by structure, the checkpoint rules,
layer
streaming, detection, validation, evaluation and the pipeline that ties them into a report.
Nothing here knows about the registry or the network."""
