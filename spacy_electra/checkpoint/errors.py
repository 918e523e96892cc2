"""The error every checkpoint reader raises: one line naming the file, the cause and the fix."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model it describes."""
