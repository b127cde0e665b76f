"""User-facing errors: one line naming the file, the line or node, and what is wrong."""


class UserError(Exception):
    """A mistake in the user's input (file, model, spec). Printed as one line, exit code 2."""


class UnsupportedModel(UserError):
    """The ONNX model uses something the verifier cannot handle."""


class SpecError(UserError):
    """A malformed VNN-LIB file: message is `FILE:LINE: what is wrong`."""
